package e2e

// schedule is make e2e's run, one line per scenario (each declared in its scenario_<name>.go), in order: each
// leaves the system whole for the next (the runner waits for it), and each one's needs come before it. A new
// scenario is a new file and a line here.
var schedule = []scenario{
	steady,
	metrics,
	// Early: bank-db runs PostgreSQL 17 until it, and every later row runs the shipped 18.
	majorUpgrade,
	terraform,
	networkPolicies,
	bankOutage,
	bankDBFailover,
	storeDBFailover,
	nodeKill,
	nodeCut,
	drain,
	rollingUpdate,
	badRelease,
	pitr,
	objectstoreOutage,
	// Continuous delivery after the scenarios that change the deployment by hand, which Flux would revert;
	// the negative control, whose loss stays in the databases, last (it suspends Flux).
	cdBootstrap,
	cdDrift,
	cdRelease,
	cdBadRelease,
	negativeControl,
}
