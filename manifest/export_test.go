package manifest

// ScanLocations exposes scanLocations to the external tests (fuzzing).
var ScanLocations = scanLocations
