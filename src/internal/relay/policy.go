//go:build !txmesh_negative_control

package relay

// negativeControl is false in every build but the HA lab's negative control (policy_negative.go).
const negativeControl = false

func legacyPermanent(error) bool { return false }
