package crc32c

// Combine returns the CRC-32C of A followed by B, from the CRC-32C of A (crcA), that of
// B (crcB) and B's length: a file's checksum from its pieces, computed in parallel. It
// is zlib's crc32_combine for the Castagnoli polynomial: appending n zero bytes to A is
// a linear map over GF(2), applied by squaring a 32×32 matrix per bit of n.
func Combine(crcA, crcB uint32, lenB int64) uint32 {
	if lenB <= 0 {
		return crcA
	}
	var even, odd [32]uint32
	odd[0] = 0x82f63b78 // the reflected Castagnoli polynomial: one zero bit
	row := uint32(1)
	for i := 1; i < 32; i++ {
		odd[i] = row
		row <<= 1
	}
	square(&even, &odd) // two zero bits
	square(&odd, &even) // four zero bits
	for {
		square(&even, &odd) // the next one zero byte, two, four…
		if lenB&1 != 0 {
			crcA = times(&even, crcA)
		}
		lenB >>= 1
		if lenB == 0 {
			break
		}
		square(&odd, &even)
		if lenB&1 != 0 {
			crcA = times(&odd, crcA)
		}
		lenB >>= 1
		if lenB == 0 {
			break
		}
	}
	return crcA ^ crcB
}

func times(mat *[32]uint32, vec uint32) uint32 {
	var sum uint32
	for i := 0; vec != 0; i, vec = i+1, vec>>1 {
		if vec&1 != 0 {
			sum ^= mat[i]
		}
	}
	return sum
}

func square(out, mat *[32]uint32) {
	for i := range 32 {
		out[i] = times(mat, mat[i])
	}
}

// Hex is a CRC-32C as manifests write it: 8 lowercase hex digits, big-endian.
func Hex(v uint32) string {
	const digits = "0123456789abcdef"
	var b [8]byte
	for i := 7; i >= 0; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return string(b[:])
}
