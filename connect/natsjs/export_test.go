package natsjs

// NakDelay is nakDelay, for the tests.
var NakDelay = nakDelay
