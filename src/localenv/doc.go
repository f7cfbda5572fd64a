// Package localenv groups what runs txmesh on one machine: throwaway PostgreSQL servers (pglocal) and a
// throwaway certificate authority (pki). They serve the tests, `make run`, the HA lab and the benchmark. They
// live outside src/internal so that the lab and the benchmark under test/ can import them too (Go's internal
// rule would hide them from anything outside src/).
package localenv
