package e2e

// node-cut: node-kill's checks with the node cut off (its link down) for 90 s instead, store-db's primary
// switched over beside bank-db's first: both primaries behind the partition (nodeFailure).
var nodeCut = scenario{
	name:  "node-cut",
	fault: "the node holding both databases' primaries is cut off (its link down) for 90 s, then reconnected",
	run:   nodeFailure(true),
}
