package marathon

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/agora-sched/agora/frameworks"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/health"
	"github.com/agora-sched/agora/pkg/hostaccess"
	"github.com/agora-sched/agora/pkg/resources"
)

// Validate checks the app as Marathon does and names every problem by its JSON path.
func (a App) Validate() error {
	var p problems
	a.checkBasics(&p)
	a.checkContainer(&p)
	a.checkPorts(&p)
	a.checkHealth(&p)
	a.checkRest(&p)
	a.checkResident(&p)
	return p.err()
}

// checkBasics checks the app's id, command, user, resources and strategies.
func (a App) checkBasics(p *problems) {
	switch {
	case a.ID == "" || a.ID == "/":
		p.add("/id", "must not be empty")
	case idProblem(a.ID) != "":
		p.add("/id", "%s", idProblem(a.ID))
	}
	if a.Cmd == "" && len(a.Args) == 0 && a.Image() == "" {
		p.add("/", "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'.")
	}
	if a.Cmd != "" && len(a.Args) > 0 {
		p.add("/", "AppDefinition must not contain both 'cmd' and 'args'.")
	}
	if err := hostaccess.ValidUser(a.User); err != nil {
		p.add("/user", "%s", err.Error())
	}
	nonNegative := func(path string, v float64) {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			p.add(path, "got %v, expected 0.0 or more", v)
		}
	}
	nonNegative("/cpus", a.CPUs)
	nonNegative("/mem", a.Mem)
	if a.Mem >= 0 && a.Mem < resources.MinTaskMem {
		p.add("/mem", "got %v, expected at least %v (MiB): runc's own start-up runs inside the container's memory limit and needs about 3 MiB", a.Mem, resources.MinTaskMem)
	}
	nonNegative("/disk", a.Disk)
	nonNegative("/backoffSeconds", a.BackoffSeconds)
	nonNegative("/maxLaunchDelaySeconds", a.MaxLaunchDelaySeconds)
	if a.Instances < 0 {
		p.add("/instances", "got %d, expected 0 or more", a.Instances)
	}
	if a.BackoffFactor < 1 {
		p.add("/backoffFactor", "got %v, expected 1.0 or more", a.BackoffFactor)
	}
	for _, f := range []struct {
		path string
		v    float64
	}{{"/upgradeStrategy/minimumHealthCapacity", a.UpgradeStrategy.MinimumHealthCapacity}, {"/upgradeStrategy/maximumOverCapacity", a.UpgradeStrategy.MaximumOverCapacity}} {
		if f.v < 0 || f.v > 1 || math.IsNaN(f.v) {
			p.add(f.path, "got %v, expected between 0.0 and 1.0", f.v)
		}
	}
	if a.UnreachableStrategy.InactiveAfterSeconds < 0 {
		p.add("/unreachableStrategy/inactiveAfterSeconds", "got %v, expected 0 or more", a.UnreachableStrategy.InactiveAfterSeconds)
	}
	if !a.UnreachableStrategy.Disabled && a.UnreachableStrategy.ExpungeAfterSeconds < a.UnreachableStrategy.InactiveAfterSeconds {
		p.add("/unreachableStrategy/expungeAfterSeconds", "got %v, expected at least inactiveAfterSeconds (%v)", a.UnreachableStrategy.ExpungeAfterSeconds, a.UnreachableStrategy.InactiveAfterSeconds)
	}
	if !slices.Contains([]string{KillYoungestFirst, KillOldestFirst}, a.KillSelection) {
		p.add("/killSelection", "got %q, expected YOUNGEST_FIRST or OLDEST_FIRST", a.KillSelection)
	}
	if g := a.TaskKillGracePeriodSeconds; g != nil && *g < 0 {
		p.add("/taskKillGracePeriodSeconds", "got %v, expected 0 or more", *g)
	}
}

// checkContainer checks the container: its type, image, volumes and port mappings.
func (a App) checkContainer(p *problems) {
	if c := a.Container; c != nil {
		switch c.Type {
		case "DOCKER", "MESOS":
		default:
			p.add("/container/type", "got %q, expected DOCKER or MESOS", c.Type)
		}
		if c.Type == "DOCKER" && (c.Docker == nil || strings.TrimSpace(c.Docker.Image) == "") {
			p.add("/container/docker/image", "must not be empty")
		}
		for i, v := range c.Volumes {
			path := fmt.Sprintf("/container/volumes(%d)", i)
			switch {
			case v.Persistent != nil:
				a.checkPersistentVolume(p, path, v)
			case v.External != nil:
				p.add(path, "only host volumes (hostPath), secret volumes (secret) and local persistent volumes (persistent) are supported, not external ones")
			case v.ContainerPath == "" || strings.Contains(v.ContainerPath, ".."):
				p.add(path+"/containerPath", "must not be empty nor contain '..'")
			case v.Secret != "" && (v.HostPath != "" || v.Mode != ""):
				p.add(path+"/secret", "a secret volume has containerPath and secret only, no hostPath or mode")
			case v.Secret != "":
				sv := frameworks.SecretVolume{ContainerPath: v.ContainerPath, Secret: v.Secret}
				if field, msg := frameworks.CheckSecretVolume(sv, a.Secrets, "/secrets", a.Image() != ""); field != "" {
					p.add(path+"/"+field, "%s", msg)
				}
			case !hostaccess.ValidHostPath(v.HostPath):
				p.add(path+"/hostPath", "must be an absolute path on the agent or the name of a host volume agents declare, got %q", v.HostPath)
			case v.Mode != "" && v.Mode != "RO" && v.Mode != "RW":
				p.add(path+"/mode", "got %q, expected RO or RW", v.Mode)
			}
		}
		for i, pm := range c.PortMappings {
			if pm.HostPort < 0 || pm.HostPort > 65535 {
				p.add(fmt.Sprintf("/container/portMappings(%d)/hostPort", i), "got %d, expected 0 to 65535", pm.HostPort)
			}
			if pm.ServicePort < 0 || pm.ServicePort > 65535 {
				p.add(fmt.Sprintf("/container/portMappings(%d)/servicePort", i), "got %d, expected 0 to 65535 (0: one is assigned)", pm.ServicePort)
			}
			if !validPortProtocol(pm.Protocol) {
				p.add(fmt.Sprintf("/container/portMappings(%d)/protocol", i), "got %q, expected %s", pm.Protocol, strings.Join(api.PortProtocols, ", "))
			}
		}
	}
}

// checkPorts checks the port definitions.
func (a App) checkPorts(p *problems) {
	names := map[string]bool{}
	for i, pd := range a.PortDefinitions {
		if pd.Port < 0 || pd.Port > 65535 {
			p.add(fmt.Sprintf("/portDefinitions(%d)/port", i), "got %d, expected 0 to 65535", pd.Port)
		}
		if !validPortProtocol(pd.Protocol) {
			p.add(fmt.Sprintf("/portDefinitions(%d)/protocol", i), "got %q, expected %s", pd.Protocol, strings.Join(api.PortProtocols, ", "))
		}
		if pd.Name != "" {
			if names[pd.Name] {
				p.add(fmt.Sprintf("/portDefinitions(%d)/name", i), "port names must be unique; %q is used twice", pd.Name)
			}
			names[pd.Name] = true
		}
	}
}

// checkHealth checks health and readiness checks.
func (a App) checkHealth(p *problems) {
	for i, hc := range a.HealthChecks {
		if err := hc.Validate(a.PortCount()); err != nil {
			field := "protocol"
			if fe, ok := err.(*health.FieldError); ok {
				field = fe.Field
			}
			p.add(fmt.Sprintf("/healthChecks(%d)/%s", i, field), "%s", strings.TrimPrefix(err.Error(), field+": "))
		}
	}
	portNames := a.PortNames()
	for i, rc := range a.ReadinessChecks {
		path := fmt.Sprintf("/readinessChecks(%d)", i)
		if rc.Protocol != "" && rc.Protocol != "HTTP" && rc.Protocol != "HTTPS" {
			p.add(path+"/protocol", "got %q, expected HTTP or HTTPS", rc.Protocol)
		}
		if !slices.Contains(portNames, rc.PortName) || rc.PortName == "" {
			p.add(path+"/portName", "%q names none of the app's ports (%s)", rc.PortName, strings.Join(portNames, ", "))
		}
		if rc.IntervalSeconds < 0 || rc.TimeoutSeconds < 0 {
			p.add(path, "intervalSeconds and timeoutSeconds must not be negative")
		}
	}
}

// checkRest checks constraints, secret references, dependencies, fetch and labels.
func (a App) checkRest(p *problems) {
	for i, c := range a.Constraints {
		if _, err := ParseConstraint(c); err != nil {
			p.add(fmt.Sprintf("/constraints(%d)", i), "%s", err.Error())
		}
	}
	for name, v := range a.Env {
		if v.Secret != "" {
			if _, ok := a.Secrets[v.Secret]; !ok {
				p.add("/env/"+name, "references the secret %q, which /secrets does not define", v.Secret)
			}
		}
	}
	for i, dep := range a.Dependencies {
		if NormalizeID(dep) == "" {
			p.add(fmt.Sprintf("/dependencies(%d)", i), "must not be empty")
		}
	}
	if len(a.Fetch) > 0 && len(a.URIs) > 0 {
		p.add("/uris", "may not be given with fetch (uris is fetch's older form)")
	}
	if err := api.ValidateArtifacts("artifacts", a.Artifacts()); err != nil {
		fe := err.(*api.FieldError)
		path := "/fetch"
		var i int
		var field string
		if n, _ := fmt.Sscanf(fe.Field, "artifacts[%d].%s", &i, &field); n == 2 {
			if len(a.Fetch) > 0 {
				path = fmt.Sprintf("/fetch(%d)/%s", i, map[string]string{"uri": "uri", "output_file": "destPath", "extract": "extract"}[field])
			} else {
				path = fmt.Sprintf("/uris(%d)", i)
			}
		}
		p.add(path, "%s", fe.Msg)
	}
	for k := range a.Labels {
		if k == "" {
			p.add("/labels", "label names must not be empty")
		}
	}
}
