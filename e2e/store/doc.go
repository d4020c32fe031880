// Package store tests that kiln's store survives what happens to it in
// real life, end to end: kill -9 at any point of any command (the next
// command repairs it silently), many kiln processes on one store at once,
// hostile layers, archives, contexts and Dockerfiles (nothing escapes,
// nothing is lost), a full disk (one clear error, the store as before),
// and kiln doctor finding, repairing and reporting damage.
package store
