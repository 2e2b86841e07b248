import Exporters
import Foundation
import ProfileModel
import TestSupport
import XCTest

final class SpeedscopeExporterTests: XCTestCase {
    /// The exported file parsed back.
    private func parse(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(bytes))
        return try XCTUnwrap(object as? [String: Any], "top level is not an object", file: file, line: line)
    }

    func testDocumentHeader() throws {
        let document = try parse(SpeedscopeExporter().render(Fixture.profile))
        XCTAssertEqual(document["$schema"] as? String, "https://www.speedscope.app/file-format-schema.json")
        XCTAssertEqual(document["exporter"] as? String, "pybpfprof")
        XCTAssertEqual(document["activeProfileIndex"] as? Int, 0)
        XCTAssertEqual(
            document["name"] as? String,
            "/usr/bin/python3 app.py, /usr/local/bin/python3.11 -m batch (2024-05-01T12:00:00Z)"
        )
        let named = try parse(SpeedscopeExporter(name: "nightly run").render(Fixture.profile))
        XCTAssertEqual(named["name"] as? String, "nightly run")
    }

    func testSharedFramesAreTheProfilesFrames() throws {
        let profile = Fixture.profile
        let document = try parse(SpeedscopeExporter().render(profile))
        let frames = try XCTUnwrap((document["shared"] as? [String: Any])?["frames"] as? [[String: Any]])
        XCTAssertEqual(frames.count, profile.frames.count)
        for (exported, frame) in zip(frames, profile.frames) {
            XCTAssertEqual(exported["name"] as? String, frame.name)
            // Unknown files and lines are absent, not "" and 0.
            XCTAssertEqual(exported["file"] as? String, frame.file.isEmpty ? nil : frame.file)
            XCTAssertEqual(exported["line"] as? Int, frame.line == 0 ? nil : frame.line)
        }
    }

    func testOneSampledProfilePerThreadWithItsStacksInTimeOrder() throws {
        let document = try parse(SpeedscopeExporter().render(Fixture.profile))
        let frames = try XCTUnwrap((document["shared"] as? [String: Any])?["frames"] as? [[String: Any]])
        let profiles = try XCTUnwrap(document["profiles"] as? [[String: Any]])

        struct Expected {
            var name: String
            var stacks: [[Frame]]
            var start: UInt64
        }
        let ms = Fixture.ms
        let expectations = [
            Expected(name: "python3 pid 100 tid 100 (MainThread)", stacks: Fixture.mainThreadStacks, start: 0),
            Expected(name: "python3 pid 100 tid 101 (worker)", stacks: Fixture.workerStacks, start: 5 * ms),
            Expected(name: "python3.11 pid 200 tid 200 (MainThread)", stacks: Fixture.batchStacks, start: 1 * ms),
        ]
        XCTAssertEqual(profiles.count, expectations.count)
        for (profile, expected) in zip(profiles, expectations) {
            XCTAssertEqual(profile["type"] as? String, "sampled")
            XCTAssertEqual(profile["name"] as? String, expected.name)
            XCTAssertEqual(profile["unit"] as? String, "nanoseconds")
            let samples = try XCTUnwrap(profile["samples"] as? [[Int]], expected.name)
            let weights = try XCTUnwrap(profile["weights"] as? [UInt64], expected.name)
            XCTAssertEqual(samples.count, expected.stacks.count, expected.name)
            XCTAssertEqual(weights, Array(repeating: Fixture.period, count: expected.stacks.count), expected.name)
            // Samples are 10 ms apart in every thread of the fixture.
            let lastSample = expected.start + UInt64(expected.stacks.count - 1) * 10 * ms
            XCTAssertEqual(profile["startValue"] as? UInt64, expected.start, expected.name)
            XCTAssertEqual(profile["endValue"] as? UInt64, lastSample + Fixture.period, expected.name)

            let stacks = samples.map { sample in
                sample.map { index in
                    let frame = frames[index]
                    return "\(frame["name"]!) \(frame["file"] ?? "") \(frame["line"] ?? 0)"
                }
            }
            let expectedStacks = expected.stacks.map { stack in stack.map { "\($0.name) \($0.file) \($0.line)" } }
            XCTAssertEqual(stacks, expectedStacks, expected.name)
        }
    }

    /// Each sample weighs what it stands for in nanoseconds, so the sleep is 99% of the thread in speedscope.
    func testWeightsAreWhatEachSampleStandsFor() throws {
        let bytes = SpeedscopeExporter().render(IntervalFixture.profile(.wall))
        XCTAssertEqual(try SpeedscopeSchemaValidator.violations(of: bytes), [])
        let profiles = try XCTUnwrap(try parse(bytes)["profiles"] as? [[String: Any]])
        XCTAssertEqual(profiles.count, 1)
        XCTAssertEqual(profiles[0]["unit"] as? String, "nanoseconds")
        XCTAssertEqual(profiles[0]["weights"] as? [UInt64], [10_000_000, 1_000_000_000])
        XCTAssertEqual(profiles[0]["startValue"] as? UInt64, 10_000_000)
        XCTAssertEqual(profiles[0]["endValue"] as? UInt64, 1_020_000_000)
        let frames = try XCTUnwrap((try parse(bytes)["shared"] as? [String: Any])?["frames"] as? [[String: Any]])
        let samples = try XCTUnwrap(profiles[0]["samples"] as? [[Int]])
        XCTAssertEqual(samples.map { frames[$0.last!]["name"] as? String }, ["Server.serve", "[off-CPU: sleeping]"])
    }

    func testThreadOfUnknownProcessIsNamedByIDs() throws {
        var profile = Profile(sampleRate: 1000, startDate: 0)
        profile.append(time: 7, pid: 3, tid: 4, threadName: "", stack: [Fixture.main])
        let document = try parse(SpeedscopeExporter().render(profile))
        let profiles = try XCTUnwrap(document["profiles"] as? [[String: Any]])
        XCTAssertEqual(profiles.first?["name"] as? String, "pid 3 tid 4")
        XCTAssertEqual(profiles.first?["startValue"] as? Int, 7)
        XCTAssertEqual(profiles.first?["endValue"] as? Int, 7 + 1_000_000)
        XCTAssertEqual(document["name"] as? String, "pybpfprof 1970-01-01T00:00:00Z")
    }

    func testArbitraryNamesSurviveTheRoundTrip() throws {
        let names = [
            "quote \" backslash \\ slash /",
            "controls \n\r\t\u{8}\u{C}\u{1}\u{1F}\u{7F} and NUL \0 end",
            "unicode é ß 漢字 🐍 \u{2028}\u{2029}",
            // What the profiler gets when it decodes bytes that are not UTF-8: replacement characters.
            String(decoding: [0x66, 0xFF, 0xFE, 0xC3, 0x28, 0xED, 0xA0, 0x80, 0x67] as [UInt8], as: UTF8.self),
        ]
        var profile = Profile(sampleRate: 100, startDate: 0)
        for name in names {
            profile.append(time: 0, pid: 1, tid: 1, threadName: name, stack: [Frame(kind: .python, name: name, file: name, line: 1)])
        }
        let bytes = SpeedscopeExporter(name: names[1]).render(profile)
        XCTAssertEqual(try SpeedscopeSchemaValidator.violations(of: bytes), [])

        let document = try parse(bytes)
        XCTAssertEqual(document["name"] as? String, names[1])
        let frames = try XCTUnwrap((document["shared"] as? [String: Any])?["frames"] as? [[String: Any]])
        XCTAssertEqual(frames.map { $0["name"] as? String }, names)
        XCTAssertEqual(frames.map { $0["file"] as? String }, names)
        let profiles = try XCTUnwrap(document["profiles"] as? [[String: Any]])
        XCTAssertEqual(profiles.first?["name"] as? String, "pid 1 tid 1 (\(names.last!))")
    }

    func testConformsToTheSchema() throws {
        XCTAssertEqual(try SpeedscopeSchemaValidator.violations(of: SpeedscopeExporter().render(Fixture.profile)), [])
        XCTAssertEqual(
            try SpeedscopeSchemaValidator.violations(of: SpeedscopeExporter().render(Profile(sampleRate: 100, startDate: 0))),
            []
        )
    }

    /// Without this, a validator that accepts everything would make the test above pass.
    func testValidatorRejectsADocumentMissingARequiredField() throws {
        var document = try parse(SpeedscopeExporter().render(Fixture.profile))
        document["shared"] = nil
        let broken = try JSONSerialization.data(withJSONObject: document)
        XCTAssertEqual(try SpeedscopeSchemaValidator.violations(of: Array(broken)), ["(root): 'shared' is a required property"])
        XCTAssertEqual(try SpeedscopeSchemaValidator.violations(of: Array("{\"$schema\":".utf8)).count, 1)
    }

    /// A large recording renders whole: every sample is counted once in the folded output and the
    /// speedscope document is complete. (Speed is measured in Scripts/, not asserted here.)
    func testLargeRecording() {
        var profile = Profile(sampleRate: 997, startDate: 0)
        let frames = (0..<200).map { profile.intern(Frame(kind: .python, name: "function\($0)", file: "module\($0 % 7).py", line: $0)) }
        let stacks = (0..<1000).map { stack in
            profile.intern(stack: (0..<(10 + stack % 30)).map { frames[(stack * 31 + $0 * 7) % frames.count] })
        }
        let threadName = profile.intern(threadName: "worker")
        let process = profile.add(ProfiledProcess(pid: 1, commandLine: "python3 big.py", pythonVersion: "3.12.1"))
        let sampleCount = 200_000
        profile.samples.reserveCapacity(sampleCount)
        for index in 0..<sampleCount {
            profile.samples.append(Sample(
                time: UInt64(index) * 1000, cpu: 0, process: process, tid: Int32(index % 8), threadName: threadName,
                stack: stacks[(index * 7919) % stacks.count], weight: profile.samplePeriod
            ))
        }

        let bytes = SpeedscopeExporter().render(profile)
        let folded = FoldedExporter(prefixesThreads: true).lines(profile)

        XCTAssertEqual(Array(bytes.suffix(4)), Array("]}]}".utf8))
        XCTAssertEqual(folded.map { Int($0.split(separator: " ").last!)! }.reduce(0, +), sampleCount)
    }
}
