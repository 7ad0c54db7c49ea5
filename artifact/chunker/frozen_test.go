package chunker

// frozenSizes are the cuts of Default over randomBytes(4, 256 KiB). If this
// test fails, chunk IDs of every released manifest would change.
var frozenSizes = []int{17579, 18256, 10451, 17895, 19566, 17531, 14614, 16517, 17709, 21684, 17900, 16708, 17884, 16954, 20896}
