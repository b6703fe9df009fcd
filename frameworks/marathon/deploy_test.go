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
