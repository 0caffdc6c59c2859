package rtc

// ReplaceCandidates exposes replaceCandidates to the package's external tests.
var ReplaceCandidates = replaceCandidates
