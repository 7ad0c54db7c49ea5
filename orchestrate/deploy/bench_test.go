package deploy_test

import (
	"bytes"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"scatter/orchestrate/command"
	"scatter/orchestrate/config"
	"scatter/orchestrate/host"
	"scatter/orchestrate/host/hosttest"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var (
	ackHosts  = flag.Int("ack.hosts", 50, "members in BenchmarkCommandToLastAck")
	ackRounds = flag.Int("ack.rounds", 5, "commands per benchmark iteration in BenchmarkCommandToLastAck")
	ackDebug  = flag.Bool("ack.debug", false, "log every host and print the missing hosts' lines on failure")
)

// BenchmarkCommandToLastAck measures orchestration alone: from the moment
// the deploy host sends one signed command to every member by gossip, to
// the last member's completion ack (a TCP-connect check against a local
// listener: a no-op action that still runs through the agent), sent as the
// controller sends a large wave, by gossip and point to point. Members are
// real hosts in one process on their own loopback addresses; cluster
// start-up is excluded. As the deploy controller does, the command is sent
// again, point to point, every 2 s to members that have not answered (a
// lost gossip message or ack). Each iteration sends -ack.rounds commands
// (so -benchtime 1x starts the cluster once); reports the median member's
// and the last member's time, median over the rounds, and the worst last.
//
//	go test ./orchestrate/deploy -run XXX -bench CommandToLastAck -benchtime 1x -ack.hosts 200
func BenchmarkCommandToLastAck(b *testing.B) {
	port, stop, err := hosttest.DeadEnd("127.0.0.1")
	if err != nil {
		b.Fatal(err)
	}
	defer stop()
	n := *ackHosts
	c := hosttest.New(b)
	c.Repos = func(string, string) map[string]config.Repo {
		return map[string]config.Repo{"mw": {Actions: map[string]config.Action{
			"noop": {TCP: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Timeout: 5 * time.Second}}}}
	}
	logs := &lockedBuffer{}
	c.Configure = func(cfg *host.Config) {
		// The daemon's default: the tests' 1 s push/pull, a full-state TCP
		// exchange per member per second, starves 200 members on 2 cores
		// until SWIM declares live members dead.
		cfg.PushPullInterval = 0
		if *ackDebug {
			cfg.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
	}
	start := time.Now()
	origin := c.Start("origin", 2, true)
	var names []string
	for i := range n {
		name := fmt.Sprintf("b%03d", i)
		names = append(names, name)
		c.Start(name, 3+i, false)
	}
	c.WaitMembers(n+1, 5*time.Minute)
	b.Logf("%d members converged in %v", n+1, time.Since(start).Round(time.Millisecond))
	seq := uint64(0)
	var medians, lasts []float64
	b.ResetTimer()
	for i := range b.N * *ackRounds {
		deploy := fmt.Sprintf("bench-%d", i)
		acks, cancel := origin.Subscribe(deploy)
		sign := func(hosts []string) []byte {
			seq++
			now := time.Now()
			cmd, err := command.Sign(&command.Command{Deploy: deploy, Seq: seq, Step: 1, Controller: "origin",
				Issued: now, Expires: now.Add(time.Minute), Repo: "mw", Kind: command.Check,
				Hosts: hosts, Checks: []string{"noop"}, Timeout: 10 * time.Second}, c.Key)
			if err != nil {
				b.Fatal(err)
			}
			return cmd
		}
		sent := time.Now()
		for lo := 0; lo < n; {
			hi := min(n, lo+60) // as many host names as fit one gossip message
			// As the controller sends a large wave: by gossip and point
			// to point at once.
			cmd := sign(names[lo:hi])
			if err := origin.SendCommand(cmd, nil); err != nil {
				b.Fatal(err)
			}
			go origin.SendCommand(cmd, names[lo:hi])
			lo = hi
		}
		var took []float64
		seen := map[string]bool{}
		timeout := time.After(60 * time.Second)
		retry := time.NewTicker(2 * time.Second)
		resent := 0
		for len(seen) < n {
			select {
			case a := <-acks:
				if !a.OK {
					b.Fatalf("%s: %s", a.Host, a.Error)
				}
				if !seen[a.Host] {
					seen[a.Host] = true
					took = append(took, time.Since(sent).Seconds())
				}
			case <-retry.C:
				var missing []string
				for _, name := range names {
					if !seen[name] {
						missing = append(missing, name)
					}
				}
				resent += len(missing)
				for lo := 0; lo < len(missing); lo += 60 {
					origin.SendCommand(sign(missing[lo:min(len(missing), lo+60)]), missing[lo:min(len(missing), lo+60)])
				}
			case <-timeout:
				var missing []string
				for _, name := range names {
					if !seen[name] {
						missing = append(missing, name)
					}
				}
				if *ackDebug {
					for _, line := range strings.Split(logs.String(), "\n") {
						for _, m := range missing[:min(3, len(missing))] {
							if strings.Contains(line, "host="+m+" ") || strings.Contains(line, m) && strings.Contains(line, "host=origin") {
								b.Log(line)
							}
						}
					}
				}
				b.Fatalf("%d of %d acks after 60 s; missing %v", len(seen), n, missing)
			}
		}
		retry.Stop()
		cancel()
		if resent > 0 {
			b.Logf("round %d: re-sent to %d members", i, resent)
		}
		sort.Float64s(took)
		medians = append(medians, took[len(took)/2])
		lasts = append(lasts, took[len(took)-1])
	}
	b.StopTimer()
	sort.Float64s(medians)
	sort.Float64s(lasts)
	b.ReportMetric(medians[len(medians)/2], "median-ack-s")
	b.ReportMetric(lasts[len(lasts)/2], "last-ack-s")
	b.ReportMetric(lasts[len(lasts)-1], "worst-last-ack-s")
	b.ReportMetric(float64(n), "members")
}
