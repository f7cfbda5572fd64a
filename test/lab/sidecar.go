package lab

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"github.com/txmesh/txmesh/src/localenv/httpfault"
)

// sidecar is the lab's stand-in for the Envoy sidecar of a Store pod: the Store sends plain HTTP to it
// (BANK_URL), and it forwards to the Bank's Service over mTLS with the Store's client certificate. During a
// mesh fault window its httpfault.Injector answers in the Bank's place (403 "RBAC: access denied", an empty
// 404, a 403 that replaces the Bank's answer after the Bank applied the request) or garbles request bodies.
// It also records every rejection the Bank itself gave, per transaction id: the ground truth the judge holds
// each dead letter against.
type sidecar struct {
	name string
	in   *httpfault.Injector
	url  string
	srv  *http.Server
	ref  *refusals
}

// refusals are the Bank's own rejections of transactions (a marked 400, 409, 413 or 415 for a single
// transaction, or for a batch item), by transaction id, as the sidecars saw them.
type refusals struct {
	mu  sync.Mutex
	ids map[string]string // id → the Bank's error code
}

func newRefusals() *refusals { return &refusals{ids: map[string]string{}} }

func (r *refusals) add(id, code string) {
	r.mu.Lock()
	r.ids[id] = code
	r.mu.Unlock()
}

// has reports whether the Bank itself rejected the transaction id at least once.
func (r *refusals) has(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.ids[id]
	return ok
}

// rejectionCodes are the Bank's rejections that end a purchase (bankclient's rejections): status → code.
var rejectionCodes = map[int]string{
	http.StatusBadRequest:            "invalid_request",
	http.StatusConflict:              "idempotency_conflict",
	http.StatusRequestEntityTooLarge: "payload_too_large",
	http.StatusUnsupportedMediaType:  "unsupported_media_type",
}

// bankRejection returns the error code of a rejection the Bank gave itself: status is one of the rejection
// statuses, body a problem document whose error code goes with it; fromBank says the answer (or, for a batch
// item, its batch's answer) carried the Bank's header and problem content type.
func bankRejection(status int, body []byte, fromBank bool) (string, bool) {
	want, ok := rejectionCodes[status]
	if !ok || !fromBank {
		return "", false
	}
	var eb struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &eb) != nil || eb.Error.Code != want {
		return "", false
	}
	return want, true
}

// markedByBank reports whether an answer carries the Bank's marks: its service header, and a problem
// document's content type for an error.
func markedByBank(h http.Header, status int) bool {
	if h.Get("Txmesh-Service") != "bank" {
		return false
	}
	if status < 400 {
		return true
	}
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	return err == nil && mt == "application/problem+json"
}

type idsKey struct{}

// requestIDs are the transaction ids a request to the Bank is about: the one of POST /v1/transactions, the
// items of POST /v1/transactions/batch in order; nil for anything else.
func requestIDs(path string, body []byte) (ids []string, batch bool) {
	switch path {
	case "/v1/transactions":
		var tx struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(body, &tx) == nil && tx.ID != "" {
			return []string{tx.ID}, false
		}
	case "/v1/transactions/batch":
		var b struct {
			Transactions []struct {
				ID string `json:"id"`
			} `json:"transactions"`
		}
		if json.Unmarshal(body, &b) == nil {
			for _, t := range b.Transactions {
				ids = append(ids, t.ID)
			}
			return ids, true
		}
	}
	return nil, false
}

// recordAnswer notes the Bank's own rejections in the answer to a request about ids.
func (r *refusals) recordAnswer(ids []string, batch bool, status int, h http.Header, body []byte) {
	fromBank := markedByBank(h, status)
	if !batch {
		if code, ok := bankRejection(status, body, fromBank); ok && len(ids) == 1 {
			r.add(ids[0], code)
		}
		return
	}
	if status != http.StatusOK || !fromBank {
		return // a batch refused as a whole is no transaction's rejection
	}
	var resp struct {
		Results []struct {
			Status int             `json:"status"`
			Body   json.RawMessage `json:"body"`
		} `json:"results"`
	}
	if json.Unmarshal(body, &resp) != nil || len(resp.Results) != len(ids) {
		return
	}
	for i, it := range resp.Results {
		if code, ok := bankRejection(it.Status, it.Body, true); ok {
			r.add(ids[i], code)
		}
	}
}

// startSidecar listens on a free loopback port and forwards to target (https://host:port) with tlsCfg.
func startSidecar(name, target string, tlsCfg *tls.Config, ref *refusals) (*sidecar, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	tr.MaxIdleConnsPerHost = 64
	rp.Transport = tr
	rp.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, _ error) {
		w.WriteHeader(http.StatusBadGateway) // as Envoy answers when the upstream fails: no Bank marks
	}
	s := &sidecar{name: name, in: httpfault.New(), url: "http://" + ln.Addr().String(), ref: ref}
	applies := func(req *http.Request, rec *httptest.ResponseRecorder) {
		if v, ok := req.Context().Value(idsKey{}).(reqIDs); ok {
			ref.recordAnswer(v.ids, v.batch, rec.Code, rec.Header(), rec.Body.Bytes())
		}
	}
	faulty := s.in.Wrap(rp, applies)
	// The body is read before the injector sees it (and may garble it): the ids are the Store's.
	h := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodPost {
			body, err := io.ReadAll(io.LimitReader(req.Body, 8<<20))
			if err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			req.Body = io.NopCloser(bytes.NewReader(body))
			ids, batch := requestIDs(req.URL.Path, body)
			req = req.WithContext(context.WithValue(req.Context(), idsKey{}, reqIDs{ids: ids, batch: batch}))
		}
		faulty.ServeHTTP(w, req)
	})
	s.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

type reqIDs struct {
	ids   []string
	batch bool
}

// set puts a fault in force (the zero Faults ends it).
func (s *sidecar) set(f httpfault.Faults) { s.in.Set(f) }

func (s *sidecar) close() {
	s.in.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		_ = s.srv.Close()
	}
}
