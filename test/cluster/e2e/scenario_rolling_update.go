package e2e

import (
	"context"
	"fmt"
	"time"
)

// rolling-update: a new image tag (a build of the same checkout) for both services, pushed to the cluster's
// registry and rolled out under load. Checks: every available pod of both runs it, no client error.
var rollingUpdate = scenario{
	name:           "rolling-update",
	fault:          "a new image tag for the Bank and the Store, rolled out under load",
	noClientErrors: true,
	quiet:          true,
	run:            rollingUpdateRun,
}

// rollingUpdateRun ships a new image tag (a build of the same checkout with another version) to both services.
func rollingUpdateRun(ctx context.Context, e *env, r *Row) error {
	tag := "e2e-rollout"
	img, err := e.s.Rebuild(ctx, tag)
	if err != nil {
		return err
	}
	t := time.Now()
	if err := e.s.Deploy(ctx, tag, nil); err != nil {
		return err
	}
	for _, app := range []string{"bank", "store"} {
		if err := e.waitRollout(ctx, app, img.Ref, 5*time.Minute); err != nil {
			return err
		}
	}
	r.Times["rollout"] = time.Since(t).Seconds()
	e.image = img.Ref
	r.Checks = append(r.Checks, fmt.Sprintf("bank and store rolled out to %s in %.0f s", img.Ref, time.Since(t).Seconds()))
	return nil
}
