package discovery

import (
	"encoding/base32"
	"hash/fnv"
	"slices"
	"strings"
)

// Names as Mesos-DNS makes them: a task's name and its framework's become DNS labels (RFC
// 1123: lower case letters, digits and '-', at most 63 bytes).

// MaxLabel is the longest DNS label, in bytes.
const MaxLabel = 63

// Label makes s a DNS label: lower case; every run of characters other than letters and digits
// ('.', '_', '/', spaces, ...) becomes one '-'; no '-' at either end; at most MaxLabel bytes.
// It answers "" when nothing is left.
func Label(s string) string {
	b := make([]byte, 0, min(len(s), MaxLabel))
	dash := false
	for i := 0; i < len(s) && len(b) < MaxLabel; i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		default:
			dash = len(b) > 0
			continue
		}
		if dash {
			dash = false
			if b = append(b, '-'); len(b) == MaxLabel {
				break
			}
		}
		b = append(b, c)
	}
	return strings.TrimRight(string(b), "-")
}

// TaskLabel is the label of a task's name (MesosTaskName's, made a label): "/group/web" →
// "web.group" → "web-group"; "prod.backup" → "prod-backup".
func TaskLabel(name string) string { return Label(MesosTaskName(name)) }

// MesosTaskName is the name Mesos gives a task of Marathon's: an app id's path reversed and
// dotted ("/shop/web" → "web.shop"); other names as they are.
func MesosTaskName(name string) string {
	if !strings.HasPrefix(name, "/") {
		return name
	}
	parts := strings.Split(strings.Trim(name, "/"), "/")
	slices.Reverse(parts)
	return strings.Join(parts, ".")
}

// FrameworkLabel is the label of a framework's name ("marathon", "chronos", an external
// framework's name as it registered).
func FrameworkLabel(name string) string { return Label(name) }

// AgentLabel is the label of an agent id ("<uuid>-S3" → "<uuid>-s3").
func AgentLabel(id string) string { return Label(id) }

// InstanceLabel is the name of one instance, the target of its SRV records, as Mesos-DNS's HTTP
// API shows its targets ("nirvana-qmxxu-s4"): the task's label, five characters of a hash of the
// task id, and the last part of its agent's id ("S4" of "<uuid>-S4"), cut to MaxLabel.
func InstanceLabel(taskLabel, taskID, agentID string) string {
	tail := agentID
	if i := strings.LastIndexByte(agentID, '-'); i >= 0 {
		tail = agentID[i+1:]
	}
	tail = Label(tail)
	suffix := "-" + hash5(taskID)
	if tail != "" {
		suffix += "-" + tail
	}
	if len(suffix) > MaxLabel-1 {
		suffix = suffix[:MaxLabel-1]
	}
	if n := MaxLabel - len(suffix); len(taskLabel) > n {
		taskLabel = strings.TrimRight(taskLabel[:n], "-")
	}
	return taskLabel + suffix
}

var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// hash5 is five base32 characters of an FNV-1a hash of s.
func hash5(s string) string {
	h := fnv.New32a()
	h.Write([]byte(s))
	sum := h.Sum32()
	return lowerBase32.EncodeToString([]byte{byte(sum >> 24), byte(sum >> 16), byte(sum >> 8), byte(sum)})[:5]
}
