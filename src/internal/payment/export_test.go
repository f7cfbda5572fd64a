package payment

// Test hooks for the decoding fast paths.
var (
	ScanObject          = scanObject
	DecodeObjectGeneral = decodeObject
	PlainString         = plainString
)
