// Package apitest holds the OpenAPI conformance check both services' tests run: requests of every
// documented outcome are sent to a real server, and each response (status, headers, body schema, no
// undocumented field) is validated against the service's document; requests documented as valid are
// validated too, so the document cannot drift from the server either way.
package apitest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// Case is one request and the status it must get.
type Case struct {
	Name         string
	Base         string // the server's URL
	Method, Path string
	ContentType  string
	Body         string
	Header       []string // name, value, …
	Want         int
	ValidRequest bool // the request itself matches the document (bad-input cases do not)
	// Check, when set, looks further at the answer.
	Check func(t *testing.T, resp *http.Response, body []byte)
}

// Conform validates doc, then runs the cases in order, each as a subtest.
func Conform(t *testing.T, doc []byte, cases []Case) {
	t.Helper()
	ctx := context.Background()
	spec, err := openapi3.NewLoader().LoadFromData(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := spec.Validate(ctx); err != nil {
		t.Fatalf("the OpenAPI document is invalid: %v", err)
	}
	spec.Servers = nil // match any host
	router, err := gorillamux.NewRouter(spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(ctx, c.Method, c.Base+c.Path, strings.NewReader(c.Body))
			if err != nil {
				t.Fatal(err)
			}
			if c.ContentType != "" {
				req.Header.Set("Content-Type", c.ContentType)
			}
			for i := 0; i+1 < len(c.Header); i += 2 {
				req.Header.Add(c.Header[i], c.Header[i+1])
			}
			route, params, err := router.FindRoute(req)
			if err != nil {
				t.Fatalf("%s %s is not documented: %v", c.Method, c.Path, err)
			}
			in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
				Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
			if c.ValidRequest {
				if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
					t.Fatalf("request does not match the document: %v", err)
				}
				req.Body = io.NopCloser(strings.NewReader(c.Body))
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != c.Want {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, c.Want, got)
			}
			out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode,
				Header: resp.Header, Body: io.NopCloser(bytes.NewReader(got)),
				Options: &openapi3filter.Options{IncludeResponseStatus: true}}
			if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
				t.Fatalf("response does not match the document: %v\n%s", err, got)
			}
			if c.Check != nil {
				c.Check(t, resp, got)
			}
		})
	}
}
