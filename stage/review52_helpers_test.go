package stage_test

import "io"

// r52EOF is io.EOF itself, which ends a Source's stream.
var r52EOF = io.EOF
