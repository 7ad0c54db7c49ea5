// Package swarm moves release chunks between hosts over BitTorrent.
package swarm
