import CBPF
import Glibc

/// Reads records from a BPF ring buffer map. `poll` runs `handler` on the calling thread for each record;
/// the bytes are only valid during the call.
public final class RingBufferReader {
    public typealias Handler = (UnsafeRawBufferPointer) -> Void

    private var ringBuffer: OpaquePointer?
    private let handler: Handler

    public init(mapFD: Int32, handler: @escaping Handler) throws {
        self.handler = handler
        let callback: ring_buffer_sample_fn = { context, data, size in
            let reader = Unmanaged<RingBufferReader>.fromOpaque(context!).takeUnretainedValue()
            reader.handler(UnsafeRawBufferPointer(start: data, count: size))
            return 0
        }
        let context = Unmanaged.passUnretained(self).toOpaque()
        guard let ringBuffer = ring_buffer__new(mapFD, callback, context, nil) else {
            throw BPFError("opening the ring buffer", errno: Glibc.errno)
        }
        self.ringBuffer = ringBuffer
    }

    deinit { ring_buffer__free(ringBuffer) }

    /// Waits up to `timeoutMilliseconds` for records and consumes them; returns how many were read.
    @discardableResult
    public func poll(timeoutMilliseconds: Int32) throws -> Int {
        let result = ring_buffer__poll(ringBuffer, timeoutMilliseconds)
        if result == -EINTR { return 0 }
        return Int(try check(result, "polling the ring buffer"))
    }

    /// Consumes whatever is in the buffer without waiting.
    @discardableResult
    public func drain() throws -> Int {
        Int(try check(ring_buffer__consume(ringBuffer), "draining the ring buffer"))
    }
}
