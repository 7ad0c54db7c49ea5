// Package config reads scatter's two YAML config files. They answer
// different questions and are written by different people, which is the
// point of keeping them apart.
//
// # scatter.yaml: how a repository deploys
//
// scatter.yaml lives in the repository and is read on the deploy host by
// scatter publish and scatter deploy (Deploy, LoadDeploy). It says which
// hosts get the repository (Selector: labels name, dc, rack and role,
// matched by glob, and/or exact host names), how the rollout proceeds
// (canary pool, batch size, failure limit, timeouts), which checks decide
// that a host is healthy, whether promote restarts the service, the prepare
// commands run on the deploy host before the build, and the hook actions run
// on targets at each Phase. Checks and hooks are only names.
//
// # seed.yaml: what a target host is willing to do
//
// The daemon's config (scatter seed --config /etc/scatter/seed.yaml; Seed,
// LoadSeed) is kept on each target by the people who run that host. Besides
// daemon settings that flags override, it defines, per repository, the named
// actions the host runs: a command (an argv, run without a shell, as the
// repository's user, in its directory), an HTTP check, or a TCP check.
// "restart" is the action run on promote; every other name comes from the
// checks and hooks of scatter.yaml (Deploy.ActionNames lists them).
//
// # Trust model
//
// The deploy key signs manifests and commands, but a command can only name
// an action and a release: it never carries a command line. What a name
// means is decided here, on the target, in a file the deploy host cannot
// write. So a stolen deploy key or a compromised deploy host can make hosts
// fetch a signed release and run the actions their owners already allowed,
// and nothing else. Prepare commands in scatter.yaml are argv lists too, but
// they run only on the deploy host, in the repository directory, before
// anything is published; no target ever runs them.
//
// The daemon runs as an unprivileged user. An action that needs root does not
// get it from scatter; it goes through one narrowly scoped rule that the
// host's owner writes. For the restart in example_seed.yaml, a sudoers line
// (visudo -f /etc/sudoers.d/scatter):
//
//	mwdeploy ALL=(root) NOPASSWD: /bin/systemctl reload php-fpm
//
// and the action names exactly that command, with sudo -n so that a missing
// rule fails at once instead of waiting for a password:
//
//	restart:
//	  command: [sudo, -n, /bin/systemctl, reload, php-fpm]
//
// # Errors
//
// Both files are decoded through yaml.Node so that every problem names its
// line and key path, as in
//
//	scatter.yaml:12: batch: "30x": want a count like 3 or a percentage like 25%
//
// Unknown keys are errors, with a suggestion when one is close. A parse
// reports every problem it finds (as *Error values, joined with errors.Join
// when there are several), not just the first. Defaults are filled in on
// load; Validate checks a value built in code without changing it.
package config
