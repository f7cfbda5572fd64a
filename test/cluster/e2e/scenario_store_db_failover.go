package e2e

// store-db-failover: bank-db-failover's faults on the outbox's database (dbFailover).
var storeDBFailover = scenario{
	name:  "store-db-failover",
	fault: "store-db primary (the outbox's database): kill -9 from its node, then pod deletion",
	// The killed PostgreSQL recovers from a crash: DatabaseInstanceCrashed.
	alerts: []string{"DatabaseInstanceCrashed"},
	run:    dbFailover("store-db"),
}
