package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"scatter/artifact/datadir"
	"scatter/artifact/keys"
	"scatter/orchestrate/host"
	"scatter/orchestrate/trust"
)

func hostsCommand() *cli.Command {
	data := dataFlag("the deploy host's (origin) daemon data directory")
	labels := []cli.Flag{
		&cli.StringFlag{Name: "dc", Usage: "datacenter label the operator vouches for (default: what the host claims)"},
		&cli.StringFlag{Name: "rack", Usage: "rack label (default: what the host claims)"},
		&cli.StringFlag{Name: "role", Usage: "host or origin (default: what the host claims)"},
	}
	jsonFlag := &cli.BoolFlag{Name: "json", Usage: "print JSON"}
	return &cli.Command{
		Name:  "hosts",
		Usage: "enrol hosts: list the roster and pending hosts, approve, add and revoke them",
		Description: "Every host has its own key (DATA/host.key, made on its first start) and counts only\n" +
			"once the roster names it with that key. The roster, signed with the deploy key, lives in\n" +
			"the deploy host's daemon, which spreads it by gossip. A host that is not on it is\n" +
			"pending: it gossips, but is never deployed to, and nothing it says (acks, holds, state)\n" +
			"counts. A known name advertising a new key (a reinstalled host, or an impostor) is\n" +
			"flagged loudly and never approved by --all: approve it by name once you know why.",
		Subcommands: []*cli.Command{
			{
				Name: "list", Usage: "the roster's hosts, with key fingerprints, labels and whether gossip sees them",
				Flags: []cli.Flag{data, jsonFlag},
				Action: func(c *cli.Context) error {
					v, err := host.DialControl(c.String("data")).Hosts(c.Context)
					if err != nil {
						return err
					}
					if c.Bool("json") {
						return printJSON(c.App.Writer, v)
					}
					printHostsList(c.App.Writer, v)
					return nil
				},
			},
			{
				Name: "pending", Usage: "hosts in gossip that the roster does not vouch for, with the key each advertises",
				Flags: []cli.Flag{data, jsonFlag},
				Action: func(c *cli.Context) error {
					v, err := host.DialControl(c.String("data")).Hosts(c.Context)
					if err != nil {
						return err
					}
					if c.Bool("json") {
						return printJSON(c.App.Writer, v.Pending)
					}
					printPending(c.App.Writer, v.Pending)
					return nil
				},
			},
			{
				Name: "approve", Usage: "put pending hosts on the roster with the keys they advertise", ArgsUsage: "NAME...",
				Description: "Trust on first use: check the fingerprints `scatter hosts pending` shows. --all\n" +
					"approves every pending host except a known name with a new key and a host that\n" +
					"claims the origin role: name those explicitly.",
				Flags: append([]cli.Flag{data, &cli.BoolFlag{Name: "all", Usage: "approve every plain pending host"}}, labels...),
				Action: func(c *cli.Context) error {
					names := c.Args().Slice()
					if len(names) == 0 && !c.Bool("all") {
						return usagef("hosts approve: name hosts, or --all")
					}
					if (c.IsSet("dc") || c.IsSet("rack") || c.IsSet("role")) && (len(names) != 1 || c.Bool("all")) {
						return usagef("hosts approve: --dc, --rack and --role label one named host")
					}
					return editRoster(c, func(next *trust.Roster, v *host.HostsView) (string, error) {
						approved, skipped, err := trust.Approve(next, v.Pending, names, c.Bool("all"))
						if err != nil {
							return "", err
						}
						for _, s := range skipped {
							fmt.Fprintf(c.App.ErrWriter, "skipped %s: %s\n", s.Name, s.Why)
						}
						if len(approved) == 0 {
							return "", fmt.Errorf("no host to approve")
						}
						if len(approved) == 1 {
							e, _ := next.Lookup(approved[0])
							if err := setLabels(c, &e); err != nil {
								return "", err
							}
							next.Put(e)
						}
						return "approved " + strings.Join(approved, ", "), nil
					})
				},
			},
			{
				Name: "add", Usage: "put a host on the roster by name and public key (from config management)", ArgsUsage: "NAME KEY",
				Description: "KEY is the host's public key as `scatter hosts key` prints it on that host\n" +
					"(base64), or a PEM public key file. Replaces the key of a name already enrolled.",
				Flags: append([]cli.Flag{data}, labels...),
				Action: func(c *cli.Context) error {
					a, err := args(c, "NAME", "KEY")
					if err != nil {
						return err
					}
					pub, err := parseHostKey(a[1])
					if err != nil {
						return usagef("hosts add: %v", err)
					}
					return editRoster(c, func(next *trust.Roster, _ *host.HostsView) (string, error) {
						e := trust.Entry{Name: a[0], Key: pub}
						if err := setLabels(c, &e); err != nil {
							return "", err
						}
						next.Put(e)
						return fmt.Sprintf("added %s (%s)", a[0], keys.Fingerprint(pub)), nil
					})
				},
			},
			{
				Name: "revoke", Usage: "take hosts off the roster: what they say no longer counts", ArgsUsage: "NAME...",
				Flags: []cli.Flag{data},
				Action: func(c *cli.Context) error {
					names := c.Args().Slice()
					if len(names) == 0 {
						return usagef("hosts revoke: name the hosts")
					}
					return editRoster(c, func(next *trust.Roster, _ *host.HostsView) (string, error) {
						for _, n := range names {
							if !next.Remove(n) {
								return "", fmt.Errorf("revoke %s: not on the roster", n)
							}
						}
						return "revoked " + strings.Join(names, ", "), nil
					})
				},
			},
			{
				Name: "key", Usage: "print this host's public key (creating the key if the daemon has not yet)",
				Description: "Run on a target before its daemon first starts, and hand the output to\n" +
					"`scatter hosts add` on the deploy host: the host starts enrolled.",
				Flags: []cli.Flag{dataFlag("the daemon's data directory")},
				Action: func(c *cli.Context) error {
					priv, _, err := trust.LoadOrCreateHostKey(datadir.Data(c.String("data")).HostKey())
					if err != nil {
						return err
					}
					pub := priv.Public().(ed25519.PublicKey)
					fmt.Fprintf(c.App.Writer, "%s\t%s\n", base64.StdEncoding.EncodeToString(pub), keys.Fingerprint(pub))
					return nil
				},
			},
		},
	}
}

// editRoster runs one roster edit through the origin daemon, which signs
// the new roster with the deploy key it keeps.
func editRoster(c *cli.Context, edit func(*trust.Roster, *host.HostsView) (string, error)) error {
	var said string
	ctx, cancel := context.WithTimeout(c.Context, time.Minute)
	defer cancel()
	ctl := host.DialControl(c.String("data"))
	key, err := ctl.Signer(ctx)
	if err != nil {
		return err
	}
	next, err := host.EditRoster(ctx, ctl, key, time.Now(),
		func(next *trust.Roster, v *host.HostsView) error {
			s, err := edit(next, v)
			said = s
			return err
		})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "%s: roster v%d, %d hosts\n", said, next.Version, len(next.Hosts))
	return nil
}

func setLabels(c *cli.Context, e *trust.Entry) error {
	if c.IsSet("dc") {
		e.DC = c.String("dc")
	}
	if c.IsSet("rack") {
		e.Rack = c.String("rack")
	}
	if c.IsSet("role") {
		switch r := c.String("role"); r {
		case trust.RoleHost:
			e.Role = ""
		case trust.RoleOrigin:
			e.Role = r
		default:
			return usagef("--role: want host or origin, got %q", r)
		}
	}
	return nil
}

// parseHostKey reads a host public key: base64 of its 32 bytes, or a PEM
// public key file.
func parseHostKey(s string) (ed25519.PublicKey, error) {
	if b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s)); err == nil && len(b) == ed25519.PublicKeySize {
		return ed25519.PublicKey(b), nil
	}
	if _, err := os.Stat(s); err == nil {
		return keys.LoadPublic(s)
	}
	return nil, fmt.Errorf("%q is neither a base64 ed25519 public key nor a key file", s)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printHostsList(w io.Writer, v *host.HostsView) {
	fmt.Fprintf(w, "roster v%d, %d hosts\n", v.Version, len(v.Enrolled))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tKEY\tROLE\tDC/RACK\tGOSSIP")
	for _, e := range v.Enrolled {
		seen := "not seen"
		if e.Alive {
			seen = e.Trust
		}
		if e.Trust == host.TrustNewKey {
			seen = "NEW KEY: not trusted until approved (scatter hosts pending)"
		}
		role := e.Role
		if role == "" {
			role = trust.RoleHost
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Name, e.Fingerprint, role, strings.Trim(e.DC+"/"+e.Rack, "/"), seen)
	}
	tw.Flush()
	printPending(w, v.Pending)
	printRefused(w, v.Refused)
}

func printPending(w io.Writer, pending []trust.Candidate) {
	if len(pending) == 0 {
		fmt.Fprintln(w, "no pending hosts")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PENDING\tKEY\tCLAIMS ROLE\tCLAIMS DC/RACK\tNOTE")
	for _, p := range pending {
		note := "scatter hosts approve " + p.Name
		if p.NewKey {
			note = "NEW KEY for an enrolled name (roster has " + keys.Fingerprint(p.Rostered) + "): reinstalled, or an impostor? approve by name or revoke"
		}
		role := p.Role
		if role == "" {
			role = trust.RoleHost
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Name, p.Fingerprint(), role, strings.Trim(p.DC+"/"+p.Rack, "/"), note)
	}
	tw.Flush()
}

func printRefused(w io.Writer, refused map[string]uint64) {
	if len(refused) == 0 {
		return
	}
	var parts []string
	for _, r := range trust.SortedReasons(refused) {
		parts = append(parts, fmt.Sprintf("%s=%d", r, refused[r]))
	}
	fmt.Fprintf(w, "refused messages: %s\n", strings.Join(parts, " "))
}
