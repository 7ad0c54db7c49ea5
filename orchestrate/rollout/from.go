package rollout

// SetFrom corrects the release a host ran before the deploy, its rollback
// target: the controller learns it for sure from the host's stage ack,
// while Plan.From came from gossip. It has no effect once the host was
// sent a Rollback, or for a host not in the plan.
func (m *Machine) SetFrom(name, from string) {
	h := m.byName[name]
	if h == nil || m.done || h.State == HostRollingBack || h.State == HostRolledBack || h.State == HostRollbackFailed {
		return
	}
	h.From = from
	if m.plan.From == nil {
		m.plan.From = map[string]string{}
	}
	m.plan.From[name] = from
}
