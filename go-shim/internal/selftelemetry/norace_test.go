//go:build !race

package selftelemetry

const raceEnabled = false
