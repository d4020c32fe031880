package store

import (
	"math/rand/v2"
	"strconv"
)

// Generated container names, docker-style: "adjective_surname", the
// surname one of the people whose work computing and containers rest on.
// Kiln's own lists.
var (
	nameAdjectives = []string{
		"agile", "amber", "bold", "brave", "bright", "busy", "calm", "candid",
		"careful", "cheerful", "clever", "cosy", "curious", "daring", "deft",
		"eager", "earnest", "elated", "exact", "fearless", "fervent", "fond",
		"frank", "gentle", "glad", "golden", "graceful", "hardy", "honest",
		"humble", "jolly", "keen", "kind", "lively", "loyal", "lucid", "merry",
		"mellow", "modest", "nimble", "noble", "patient", "placid", "plucky",
		"polite", "proud", "quick", "quiet", "rapid", "ready", "serene",
		"sharp", "shy", "sleek", "smooth", "snug", "spry", "steady", "stoic",
		"sunny", "swift", "tender", "thrifty", "tidy", "trusty", "upbeat",
		"vivid", "warm", "wise", "witty", "zealous",
	}
	nameSurnames = []string{
		"allen", "babbage", "backus", "bartik", "berners", "bose", "cerf",
		"codd", "conway", "corbato", "dijkstra", "engelbart", "estrin",
		"floyd", "goldberg", "hamilton", "hartree", "hoare", "hollerith",
		"hopper", "kahn", "kay", "kernighan", "knuth", "lamport", "liskov",
		"lovelace", "mccarthy", "metcalfe", "milner", "minsky", "naur",
		"neumann", "noyce", "nygaard", "perlman", "pike", "postel", "ritchie",
		"rivest", "sammet", "shamir", "shannon", "shaw", "spaerck", "stroustrup",
		"sutherland", "tanenbaum", "thompson", "torvalds", "turing", "wilkes",
		"wirth", "wozniak", "zuse",
	}
)

// GenerateName returns a generated container name; try is how many names
// were already taken, and from the second retry on a digit is added, as
// docker does, so that a crowded store still finds a free name quickly.
func GenerateName(try int) string {
	n := nameAdjectives[rand.IntN(len(nameAdjectives))] + "_" + nameSurnames[rand.IntN(len(nameSurnames))]
	if try > 1 {
		n += strconv.Itoa(rand.IntN(10))
	}
	return n
}
