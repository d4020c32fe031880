// Package images tests kiln's image verbs end to end, as docker users type
// them: images (filters, formats, against a real dockerd's output), tag,
// rmi (docker's delete rules), inspect, history, import, load of a docker
// save tar, the "kiln image" group, names with a digest refused, and kiln
// run's default PATH.
package images
