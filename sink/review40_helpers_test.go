package sink_test

import "io"

var ioEOF = io.EOF
