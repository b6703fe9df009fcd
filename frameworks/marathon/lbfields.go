package marathon

import (
	"encoding/json"
)

// What load balancers read of an app that its definition may leave out. marathon-lb takes
// app["labels"] and each health check's gracePeriodSeconds, intervalSeconds, timeoutSeconds and
// maxConsecutiveFailures as always there (Marathon writes its defaults); without them it stops
// with a KeyError. showLBFields fills them into an app's JSON where the definition has none:
// labels as {}, a health check's numbers as Agora runs them (Marathon's defaults).

// showLBFields fills labels and health checks' defaults into out, an app's JSON.
func showLBFields(out map[string]any, a App) {
	if _, ok := out["labels"]; !ok {
		out["labels"] = map[string]string{}
	}
	raw, ok := out["healthChecks"].(json.RawMessage)
	if !ok {
		return
	}
	var checks []map[string]json.RawMessage
	if json.Unmarshal(raw, &checks) != nil || len(checks) != len(a.HealthChecks) {
		return
	}
	for i, c := range checks {
		hc := a.HealthChecks[i]
		for k, v := range map[string]int{
			"gracePeriodSeconds": hc.GracePeriodSeconds, "intervalSeconds": hc.IntervalSeconds,
			"timeoutSeconds": hc.TimeoutSeconds, "maxConsecutiveFailures": hc.MaxConsecutiveFailures,
		} {
			if _, ok := c[k]; !ok && c != nil {
				c[k] = mustJSON(v)
			}
		}
	}
	out["healthChecks"] = json.RawMessage(mustJSON(checks))
}
