// Package gossip is how masters and agents find each other and learn who failed: a thin layer
// over hashicorp/memberlist (SWIM gossip) that carries each member's role and addresses in its
// metadata.
//
// Use:
//
//  1. New binds the gossip port (TCP and UDP on one port) with this node's Meta: its role,
//     id, cluster id, raft and HTTP addresses.
//  2. Join contacts seeds (any member's gossip address) until one answers.
//  3. Members, Masters and Agents list what gossip knows; Events (optional) streams joins,
//     updates, graceful leaves and failures without ever blocking memberlist.
//  4. UpdateMeta spreads changed metadata (say, a cluster id learned later, or an agent's word
//     that it takes no tasks for now: Meta.Unavailable).
//  5. A partition heals by itself: every ReconnectEvery, a node contacts the members it saw fail
//     in the last hour, and its seeds when it knows no live member (memberlist alone stops
//     gossiping to a dead member after 30 s, and two sides apart for longer would stay apart).
//  6. Leave then Shutdown for a graceful exit (others see "left"); Shutdown alone is a crash
//     (others declare the node dead after failure detection: ~5 s on a LAN, ~1-2 s with
//     TimingLocal on loopback).
package gossip
