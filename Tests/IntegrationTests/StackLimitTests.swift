import Foundation
import XCTest

/// Stacks deeper than the BPF walk's limit are cut, and say so: a `[truncated]` frame stands where the
/// outermost Python frames are missing (above every Python frame, below the native frames that started the
/// interpreter), and exactly PY_MAX_FRAMES Python frames follow it, the innermost ones.
final class StackLimitTests: IntegrationTestCase {
    func testDeepStackIsCutWithTruncatedMarker() throws {
        try checkDeepStackIsCut()
    }

    /// The same with the walk of kernels without bpf_loop: PY_MAX_FRAMES is reached over PY_MAX_CALLS tail calls.
    func testDeepStackIsCutInOldestKernelMode() throws {
        try checkDeepStackIsCut(options: ["--oldest-kernel-mode"])
    }

    private func checkDeepStackIsCut(options: [String] = []) throws {
        let workload = try Workload.load()
        let maximum = try bpfMaximumPythonFrames()
        let spinLines = try workload.lines(ofFunction: "deep_spin")
        let bottomLine = try workload.line("deep-bottom")
        let selfLine = try workload.line("deep-self")
        // Root first: recursive deep_recurse calls, the innermost deep_recurse (calling deep_spin), then
        // deep_spin itself, whose line is whichever of its loop's lines runs.
        let expectedCallers = Array(repeating: ProfileFrame(name: "deep_recurse", file: workload.path, line: selfLine), count: maximum - 2)
            + [ProfileFrame(name: "deep_recurse", file: workload.path, line: bottomLine)]

        for interpreter in try PythonInterpreters.supported() {
            try stage([workload.path], for: interpreter)
            let running = try start(interpreter.command([workload.path, "deep", "--depth", "400"]))
            // "ready" comes from the bottom of the recursion: every sample from then on is 400 calls deep.
            try running.waitForLine("ready", timeout: 30)
            let output = scratchFile("deep-\(interpreter.name).folded")
            let result = try runPyBPFProf(["record"] + options + [
                "--pid", "\(running.pid)", "--rate", "499", "--duration", "1.5", "-o", output,
            ])
            running.killIfRunning()
            try result.requireSuccess()
            if !options.isEmpty {
                XCTAssertTrue(result.standardError.contains("tail-call walk"), "\(interpreter): the summary should name the path\n\(result.report)")
            }
            let stacks = try FoldedFile.stacks(at: output)
            let total = stacks.reduce(0) { $0 + $1.count }
            let truncated = stacks.filter { $0.frames.contains { $0.name == "[truncated]" } }
            let truncatedSamples = truncated.reduce(0) { $0 + $1.count }
            print("  \(interpreter): \(truncatedSamples) of \(total) samples truncated; Python frames after [truncated]: "
                + Set(truncated.map { $0.pythonFrames.count }).sorted().map(String.init).joined(separator: ", ")
                + " (expected \(maximum))")

            XCTAssertGreaterThanOrEqual(total, 100, "\(interpreter): too few samples of the deep stack")
            XCTAssertEqual(truncatedSamples, total, "\(interpreter): every sample is 400 calls deep, so every one should be truncated")
            for stack in truncated {
                let marker = stack.frames.firstIndex { $0.name == "[truncated]" }!
                XCTAssertEqual(stack.frames.filter { $0.name == "[truncated]" }.count, 1, "\(interpreter): one [truncated] per stack")
                XCTAssertFalse(stack.frames[..<marker].contains(where: \.isPython),
                               "\(interpreter): [truncated] should be above every Python frame")
                let python = stack.pythonFrames
                XCTAssertEqual(python.count, maximum, "\(interpreter): a truncated stack should hold the BPF maximum of \(maximum) Python frames")
                guard python.count == maximum, let leaf = python.last else { continue }
                XCTAssertTrue(leaf.name == "deep_spin" && leaf.file == workload.path && spinLines.contains(leaf.line),
                              "\(interpreter): the truncated stack's leaf should be deep_spin on one of lines \(spinLines), not \(leaf)")
                if let mismatch = zip(python.dropLast(), expectedCallers).enumerated().first(where: { $0.element.0 != $0.element.1 }) {
                    XCTFail("\(interpreter): the truncated stack should be the innermost \(maximum) frames; frame "
                        + "\(mismatch.offset) from the root is \(mismatch.element.0), expected \(mismatch.element.1)")
                }
            }
        }
    }

    /// PY_MAX_FRAMES from bpf/pybpfprof.h: a number, or a product of other defines and numbers.
    private func bpfMaximumPythonFrames() throws -> Int {
        let header = Checkout.root.appendingPathComponent("bpf/pybpfprof.h").path
        guard let text = try? String(contentsOfFile: header, encoding: .utf8) else {
            throw IntegrationError("cannot read \(header)")
        }
        var defines: [String: String] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("#define ") {
            let words = line.dropFirst("#define ".count).split(separator: " ", maxSplits: 1)
            guard words.count == 2 else { continue }
            // Without a trailing /* comment */.
            let value = words[1].components(separatedBy: "/*")[0].trimmingCharacters(in: .whitespaces)
            defines[String(words[0])] = value
        }
        func evaluate(_ expression: String, depth: Int = 0) -> Int? {
            guard depth < 8 else { return nil }
            let inner = expression.trimmingCharacters(in: CharacterSet(charactersIn: "() "))
            let factors = inner.components(separatedBy: "*").map { $0.trimmingCharacters(in: .whitespaces) }
            var product = 1
            for factor in factors {
                if let number = Int(factor) {
                    product *= number
                } else if let definition = defines[factor], let value = evaluate(definition, depth: depth + 1) {
                    product *= value
                } else {
                    return nil
                }
            }
            return product
        }
        guard let definition = defines["PY_MAX_FRAMES"], let value = evaluate(definition) else {
            throw IntegrationError("cannot read PY_MAX_FRAMES from \(header) as a number or a product of defines")
        }
        return value
    }
}
