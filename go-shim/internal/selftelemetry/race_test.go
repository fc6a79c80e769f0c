//go:build race

package selftelemetry

const raceEnabled = true
