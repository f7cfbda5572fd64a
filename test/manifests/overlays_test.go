package manifests

import "testing"

func TestOverlaysRenderAndValidate(t *testing.T) {
	dirs, err := Overlays()
	if err != nil {
		t.Fatal(err)
	}
	dirs = append(dirs, "kustomize/base", "mesh")
	for _, d := range dirs {
		t.Run(d, func(t *testing.T) {
			objs, err := Render(d)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range Check(objs) {
				t.Error(p)
			}
		})
	}
}
