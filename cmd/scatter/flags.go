package main

import (
	"github.com/urfave/cli/v2"

	"scatter/artifact/datadir"
)

// Every flag that names a path or an address can also come from the
// environment, SCATTER_ and the flag's name in capitals with _ for -, so a
// systemd unit or a shell profile sets it once. A flag on the command line
// wins over the environment, which wins over a config file.
func env(flag string) []string {
	b := []byte("SCATTER_" + flag)
	for i, c := range b {
		switch {
		case c == '-':
			b[i] = '_'
		case c >= 'a' && c <= 'z':
			b[i] = c - 'a' + 'A'
		}
	}
	return []string{string(b)}
}

// dataFlag is --data, the same on every command: the local daemon's data
// directory.
func dataFlag(usage string) cli.Flag {
	return &cli.StringFlag{Name: "data", Value: datadir.Default.Dir(), EnvVars: env("data"), Usage: usage}
}

// pathFlag is a flag naming a file, directory or address, with its
// environment fallback.
func pathFlag(name string, required bool, usage string) *cli.StringFlag {
	return &cli.StringFlag{Name: name, Required: required, EnvVars: env(name), Usage: usage}
}

// storeFlag is --store, a chunk store directory: on a host, DATA/<repo>.
func storeFlag(usage string) cli.Flag { return pathFlag("store", true, usage) }
