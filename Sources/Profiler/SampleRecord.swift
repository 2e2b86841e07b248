import CBPF

/// One record as the BPF program writes it (`struct sample` in bpf/pybpfprof.h): a header, then the kernel return
/// addresses, the native addresses and the Python frames, each list leaf first. The one reader of that layout, for
/// the ring buffer's records and the dump's alike. Each list is as long as its count says and the record's bytes
/// allow, whichever is less: a short record yields shorter lists, never a read past its end.
struct SampleRecord {
    let header: sample_header
    let kernelCount: Int
    let nativeCount: Int
    let pythonCount: Int
    private let bytes: UnsafeRawBufferPointer
    private let nativeStart: Int
    private let pythonStart: Int

    private static let headerSize = MemoryLayout<sample_header>.size
    private static let pythonFrameSize = MemoryLayout<py_frame>.size

    /// nil when the bytes cannot hold a header. The record is read in place: `bytes` must outlive it.
    init?(_ bytes: UnsafeRawBufferPointer) {
        guard let header = Self.header(of: bytes) else { return nil }
        self.header = header
        self.bytes = bytes
        kernelCount = min(Int(header.kernel_frame_count), (bytes.count - Self.headerSize) / 8)
        nativeStart = Self.headerSize + kernelCount * 8
        nativeCount = min(Int(header.native_frame_count), (bytes.count - nativeStart) / 8)
        pythonStart = nativeStart + nativeCount * 8
        pythonCount = min(Int(header.py_frame_count), (bytes.count - pythonStart) / Self.pythonFrameSize)
    }

    /// The header alone (a process event is nothing more); nil when the bytes cannot hold one.
    static func header(of bytes: UnsafeRawBufferPointer) -> sample_header? {
        guard bytes.count >= headerSize else { return nil }
        return bytes.loadUnaligned(as: sample_header.self)
    }

    /// Whether it carries stacks (an on-CPU sample or an off-CPU interval) rather than being a process event.
    var isSample: Bool { header.record_type == UInt16(RECORD_SAMPLE.rawValue) || isOffCPU }

    /// Whether it is an off-CPU interval (`--mode wall|offcpu`), weighing `header.weight_ns`.
    var isOffCPU: Bool { header.record_type == UInt16(RECORD_OFFCPU.rawValue) }

    func has(_ flag: sample_flags) -> Bool { UInt32(header.flags) & flag.rawValue != 0 }

    /// `index` 0 is the innermost.
    func kernelAddress(_ index: Int) -> UInt64 {
        bytes.loadUnaligned(fromByteOffset: Self.headerSize + index * 8, as: UInt64.self)
    }

    /// `index` 0 is the interrupted pc.
    func nativeAddress(_ index: Int) -> UInt64 {
        bytes.loadUnaligned(fromByteOffset: nativeStart + index * 8, as: UInt64.self)
    }

    /// `index` 0 is the innermost.
    func pythonFrame(_ index: Int) -> py_frame {
        bytes.loadUnaligned(fromByteOffset: pythonStart + index * Self.pythonFrameSize, as: py_frame.self)
    }

    /// The thread's name (`comm`), up to its first NUL.
    var threadName: String {
        withUnsafeBytes(of: header.comm) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
}
