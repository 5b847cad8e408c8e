import Foundation
import Testing
@testable import RelayDaemon
import RelaySpool

@Suite struct ConfigTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test(arguments: ["etc/relay.toml", "etc/relay.dev.toml"])
    func theShippedConfigFilesAreValid(_ file: String) throws {
        let settings = try RelayConfig.load(path: Self.root.appendingPathComponent(file).path).resolve()
        #expect(settings.ingest.tcpHost == "127.0.0.1")
        #expect(settings.ingest.tcpPort == 8787)
    }

    @Test func theTemplateStatesTheDefaults() throws {
        let fromTemplate = try RelayConfig.load(path: Self.root.appendingPathComponent("etc/relay.toml").path).resolve()
        let defaults = try RelayConfig().resolve()
        #expect(fromTemplate.spool.maxBytes == defaults.spool.maxBytes)
        #expect(fromTemplate.spool.path == defaults.spool.path)
        #expect(fromTemplate.ingest.unixPath == defaults.ingest.unixPath)
        #expect(fromTemplate.forward.upstream == defaults.forward.upstream)
        #expect(fromTemplate.forward.maxBatchCount == defaults.forward.maxBatchCount)
        #expect(fromTemplate.forward.backoff == defaults.forward.backoff)
        #expect(fromTemplate.ingest.limits == defaults.ingest.limits)
    }

    @Test func syntaxErrorsNameTheLine() {
        #expect { try RelayConfig.parse(toml: "[upstream]\nurl = \n", path: "r.toml") } throws: { error in
            "\(error)".hasPrefix("r.toml: line 2")
        }
    }

    @Test func unknownKeysAndWrongTypesNameTheKeyAndLine() {
        #expect { try RelayConfig.parse(toml: "[spool]\n\nmax_byte = 5\n", path: "r.toml") } throws: { error in
            "\(error)" == #"r.toml:3: unknown key "spool.max_byte""#
        }
        #expect { try RelayConfig.parse(toml: "[listen]\ntcp = 8787\n", path: "r.toml") } throws: { error in
            "\(error)" == "r.toml:2: listen.tcp: expected a string" || "\(error)" == "r.toml:2: listen.tcp: has the wrong type"
        }
    }

    @Test func badValuesAreAllReported() throws {
        let cfg = try RelayConfig.parse(toml: """
            [listen]
            tcp = "0.0.0.0:8787"
            [spool]
            on_full = "panic"
            [upstream]
            url = "ftp://x"
            batch_max_messages = 0
            """, path: "r.toml")
        #expect { try cfg.resolve() } throws: { error in
            let text = "\(error)"
            return text.contains("listen.tcp: 0.0.0.0 is not a loopback address")
                && text.contains(#"spool.on_full: expected "reject" or "drop_oldest", got "panic""#)
                && text.contains("upstream.url: expected an http:// or https:// URL")
                && text.contains("upstream.batch_max_messages: must be a positive number, got 0")
        }
    }

    @Test func remoteListenersNeedAllowRemote() throws {
        let cfg = try RelayConfig.parse(toml: "[listen]\ntcp = \"0.0.0.0:8787\"\nallow_remote = true\n", path: "r.toml")
        #expect(try cfg.resolve().ingest.tcpHost == "0.0.0.0")
    }

    @Test func environmentOverridesTheFile() throws {
        var cfg = try RelayConfig.parse(toml: "[upstream]\nwrite_key = \"from-file\"\n", path: "r.toml")
        cfg.applyEnvironment(["PLAINFLOW_RELAY_WRITE_KEY": "from-env", "PLAINFLOW_RELAY_TCP": "off", "PLAINFLOW_RELAY_SPOOL": "/tmp/x.db"])
        let s = try cfg.resolve()
        #expect(s.forward.writeKey == "from-env")
        #expect(s.ingest.relayHasWriteKey)
        #expect(s.ingest.tcpHost == nil)
        #expect(s.spool.path == "/tmp/x.db")
    }

    @Test func numbersMayBeWrittenAsIntegersOrDecimals() throws {
        let a = try RelayConfig.parse(toml: "[upstream]\nmax_requests_per_second = 50\nmax_age_hours = 1.5\n", path: "r.toml").resolve()
        #expect(a.forward.maxRequestsPerSecond == 50)
        #expect(a.spool.maxAgeMillis == 5_400_000)
    }

    @Test func anEmptyWriteKeyMeansAppsSendTheirOwn() throws {
        let s = try RelayConfig.parse(toml: "[upstream]\nwrite_key = \"\"\n", path: "r.toml").resolve()
        #expect(s.forward.writeKey == nil)
        #expect(!s.ingest.relayHasWriteKey)
    }

    @Test func theWriteKeyComesFromAFileOrASystemdCredentialNotFromTheConfig() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cfg-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "  secret-key\n".write(toFile: dir + "/write_key", atomically: true, encoding: .utf8)
        let fromFile = try RelayConfig.parse(toml: "[upstream]\nwrite_key_file = \"\(dir)/write_key\"\n", path: "r.toml").resolve()
        #expect(fromFile.forward.writeKey == "secret-key")
        #expect(fromFile.ingest.relayHasWriteKey)
        var fromCredential = RelayConfig()
        fromCredential.applyEnvironment(["CREDENTIALS_DIRECTORY": dir])
        #expect(try fromCredential.resolve().forward.writeKey == "secret-key")
        // The packaged unit's `SetCredential=write_key:` default, before the operator sets a key: apps send theirs.
        let emptyDir = dir + "/empty"
        try FileManager.default.createDirectory(atPath: emptyDir, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: emptyDir + "/write_key", contents: nil)
        var fromEmptyCredential = RelayConfig()
        fromEmptyCredential.applyEnvironment(["CREDENTIALS_DIRECTORY": emptyDir])
        #expect(try fromEmptyCredential.resolve().forward.writeKey == nil)
        #expect {
            try RelayConfig.parse(toml: "[upstream]\nwrite_key_file = \"\(dir)/missing\"\n", path: "r.toml").resolve()
        } throws: { "\($0)".contains("\(dir)/missing") && "\($0)".contains("write_key_file") }
        #expect(throws: ConfigError.self) {
            try RelayConfig.parse(toml: "[upstream]\nwrite_key = \"a\"\nwrite_key_file = \"\(dir)/write_key\"\n", path: "r.toml").resolve()
        }
    }
}
