// Package localenv groups what runs txmesh on one machine: throwaway processes (proc: start, kill -9, stop,
// pause, and cleanup after a crash), throwaway PostgreSQL servers built on it (pglocal) and a throwaway
// certificate authority (pki). They serve the tests, `make run`, the HA lab and the benchmark. They live
// outside src/internal so that the lab and the benchmark under test/ can import them too (Go's internal rule
// would hide them from anything outside src/).
package localenv
