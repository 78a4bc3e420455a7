import NIOCore

/// Entry points for the fuzz targets (`make fuzz`, `Fuzz/`) and their regression replay in `make test`: the
/// permessage-deflate negotiation and inflation, which are internal to this module. Not API: `@_spi(Fuzzing)`.
@_spi(Fuzzing)
public enum EngineIOFuzzing {
    /// Negotiates `offer` as a `Sec-WebSocket-Extensions` value against every setting, then inflates `compressed`
    /// as one message (split in two fragments at `split`) with a 64 KiB limit, the way a client's compressed
    /// frames are read. Errors are expected; a crash, a hang or unbounded memory is a finding.
    public static func permessageDeflate(offer: String, compressed: [UInt8], split: Int) {
        _ = NegotiatedDeflate.negotiate(offers: [offer], settings: PerMessageDeflate())
        _ = NegotiatedDeflate.negotiate(
            offers: offer.split(separator: "\n").map(String.init),
            settings: PerMessageDeflate(serverNoContextTakeover: true, clientNoContextTakeover: true, maxWindowBits: 9))
        let inflater = RawInflater(windowBits: 15, resetAfterMessage: false)
        let allocator = ByteBufferAllocator()
        var output = allocator.buffer(capacity: 0)
        let cut = compressed.isEmpty ? 0 : split % (compressed.count + 1)
        do {
            try inflater.decompress(ByteBuffer(bytes: compressed[..<cut]), final: false, limit: 64 * 1024, into: &output)
            try inflater.decompress(ByteBuffer(bytes: compressed[cut...]), final: true, limit: 64 * 1024, into: &output)
        } catch {
            return
        }
        precondition(output.readableBytes <= 64 * 1024, "inflated past the limit: \(output.readableBytes) bytes")
    }
}
