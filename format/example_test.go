package format_test

import (
	"fmt"

	"github.com/bucketq/bucketq/format"
)

// A batch file is records, optionally compressed as one unit, and a footer
// that says how many there are and, in version 2, a CRC-32C of it all.
func Example() {
	enc := format.NewEncoder(format.CompressionZstd)
	enc.Append([]byte(`{"id":"1"}`))
	enc.Append([]byte(`{"id":"2"}`))
	file, err := enc.Finish()
	if err != nil {
		panic(err)
	}

	b, err := format.DecodeBatch(file)
	if err != nil {
		panic(err)
	}
	fmt.Println(b.Footer.Version, b.Footer.Compression, b.Footer.RecordCount)
	for _, r := range b.Records {
		fmt.Println(string(r))
	}

	// Any change to the file is caught before the records are read.
	file[3] ^= 1
	_, err = format.DecodeBatch(file)
	fmt.Println(err != nil)
	// Output:
	// 2 zstd 2
	// {"id":"1"}
	// {"id":"2"}
	// true
}
