// Package gc tests, end to end, how kiln keeps its store bounded and says
// what it holds: df adds up to du, a rebuilt tag leaves a dangling image
// that image prune removes, prune and its flags (--filter until=,
// --keep-storage, --all), the build cache budget (--cache-max,
// KILN_CACHE_MAX) enforced at the end of builds, alone and concurrently,
// a prune waiting for running builds, and cache mounts.
package gc
