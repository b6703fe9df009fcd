package marathon

import (
	"fmt"
	"testing"
)

func TestResolveID(t *testing.T) {
	for _, c := range []struct{ base, dep, want string }{
		{"/prod/web", "db", "/prod/db"},
		{"/prod/web", "/other/db", "/other/db"},
		{"/prod/tier/web", "../db", "/prod/db"},
		{"/prod/web", "./cache", "/prod/cache"},
		{"/web", "db", "/db"},
	} {
		if got := resolveID(c.base, c.dep); got != c.want {
			t.Errorf("resolveID(%q, %q) = %q, want %q", c.base, c.dep, got, c.want)
		}
	}
}

func TestDeploymentStepsFollowDependencies(t *testing.T) {
	apps := map[string]App{
		"/shop/db":         {ID: "/shop/db"},
		"/shop/cache":      {ID: "/shop/cache"},
		"/shop/api":        {ID: "/shop/api", Dependencies: []string{"db", "cache"}},
		"/shop/front/web":  {ID: "/shop/front/web"},
		"/shop/front/edge": {ID: "/shop/front/edge", Dependencies: []string{"web"}},
	}
	groups := map[string]groupRecord{"/shop/front": {ID: "/shop/front", Dependencies: []string{"/shop/api"}}}
	all := []string{"/shop/db", "/shop/cache", "/shop/api", "/shop/front/web", "/shop/front/edge"}
	got := fmt.Sprint(orderByDependencies(all, apps, groups, func(string) bool { return false }))
	if want := "[[/shop/cache /shop/db] [/shop/api] [/shop/front/web] [/shop/front/edge]]"; got != want {
		t.Fatalf("start order %s, want %s", got, want)
	}
	got = fmt.Sprint(orderByDependencies(all, apps, groups, func(string) bool { return true }))
	if want := "[[/shop/front/edge] [/shop/front/web] [/shop/api] [/shop/cache /shop/db]]"; got != want {
		t.Fatalf("stop order %s, want %s", got, want)
	}
	// Only the changed apps make steps; what they depend on that does not change is not waited for.
	if got := fmt.Sprint(orderByDependencies([]string{"/shop/api", "/shop/front/edge"}, apps, groups, func(string) bool { return false })); got != "[[/shop/api] [/shop/front/edge]]" {
		t.Fatalf("partial change %s", got)
	}
	if c := dependencyCycle(apps, groups); c != nil {
		t.Fatalf("a cycle where there is none: %v", c)
	}
	apps["/shop/db"] = App{ID: "/shop/db", Dependencies: []string{"/shop/front/edge"}}
	if c := dependencyCycle(apps, groups); len(c) < 3 || c[0] != c[len(c)-1] {
		t.Fatalf("cycle %v, want a closed path", c)
	}
}

// TestDependsOnAnAppOrAGroup: a dependency names an app or every app of a group, and nothing
// whose id only starts the same way.
func TestDependsOnAnAppOrAGroup(t *testing.T) {
	apps := map[string]App{}
	for _, id := range []string{"/a/web", "/a/web-2", "/a/web/x", "/a/web/y/z", "/a/webz", "/b/db", "/b/db.0"} {
		apps[id] = App{ID: id}
	}
	apps["/c/one"] = App{ID: "/c/one", Dependencies: []string{"/a/web"}}
	apps["/c/two"] = App{ID: "/c/two", Dependencies: []string{"/b"}}
	ix := newAppIndex(apps)
	for id, want := range map[string]string{
		"/c/one": "[/a/web /a/web/x /a/web/y/z]",
		"/c/two": "[/b/db /b/db.0]",
	} {
		if got := fmt.Sprint(dependsOn(id, apps, nil, ix)); got != want {
			t.Errorf("%s depends on %s, want %s", id, got, want)
		}
	}
}
