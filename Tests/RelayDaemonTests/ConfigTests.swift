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
        #expect(fromTemplate.forward.maxBatchBytes == defaults.forward.maxBatchBytes)
        #expect(fromTemplate.ingest.maxRequestBytes == defaults.ingest.maxRequestBytes)
        #expect(fromTemplate.forward.backoff == defaults.forward.backoff)
        #expect(fromTemplate.ingest.limits == defaults.ingest.limits)
    }

    /// "Every key is optional: what is left out keeps the default shown
    /// here": every key the relay reads is in the template, set or commented.
    @Test func theTemplateShowsEveryKey() throws {
        let template = try String(contentsOfFile: Self.root.appendingPathComponent("etc/relay.toml").path, encoding: .utf8)
        let lines = Set(template.split(separator: "\n").map { $0.hasPrefix("# ") ? String($0.dropFirst(2)) : String($0) })
        let sections: [(String, Any)] = [
            ("listen", RelayConfig.Listen()), ("upstream", RelayConfig.Upstream()), ("spool", RelayConfig.SpoolSection()),
            ("limits", RelayConfig.Limits()), ("log", RelayConfig.Log()),
        ]
        for (section, fields) in sections {
            #expect(lines.contains("[\(section)]"), "[\(section)] is missing")
            for key in Mirror(reflecting: fields).children.compactMap(\.label) {
                #expect(lines.contains { $0.hasPrefix("\(key) = ") }, "\(section).\(key) is not in etc/relay.toml")
            }
        }
    }

    /// Sizes as an operator writes them, each unit as the daemons beside it count it.
    @Test func sizesTakeUnits() throws {
        let cfg = try RelayConfig.parse(toml: """
            [upstream]
            batch_max_bytes = "500 KB"
            [spool]
            max_bytes = "1.5GiB"
            [limits]
            max_message_bytes = 16384
            max_request_bytes = "1mib"
            """, path: "r.toml").resolve()
        #expect(cfg.forward.maxBatchBytes == 500_000)
        #expect(cfg.spool.maxBytes == 1_610_612_736)
        #expect(cfg.ingest.limits.maxMessageBytes == 16384)
        #expect(cfg.ingest.maxRequestBytes == 1_048_576)
        #expect(ByteSize(parsing: "2 TB")?.bytes == 2_000_000_000_000)
        #expect(ByteSize(parsing: "10b")?.bytes == 10)
        #expect(ByteSize(parsing: "2.01KB")?.bytes == 2010, "no floating-point byte lost")
        #expect(ByteSize(parsing: "123456789012345678")?.bytes == 123_456_789_012_345_678)
        #expect(ByteSize(parsing: "0.5 KiB")?.bytes == 512)
        for wrong in ["1G", "2 megs", "-5MB", ".5MB", "1..5MB", "MB", "", "99999999999TiB"] {
            #expect(ByteSize(parsing: wrong) == nil, "\(wrong)")
        }
        #expect { try RelayConfig.parse(toml: "[spool]\n\nmax_bytes = \"1G\"\n", path: "r.toml") } throws: { error in
            "\(error)" == #"r.toml:3: spool.max_bytes: expected \#(ByteSize.expected), got "1G""#
        }
        #expect { try RelayConfig.parse(toml: "[spool]\nmax_bytes = \"0GiB\"\n", path: "r.toml").resolve() } throws: { error in
            "\(error)".contains("spool.max_bytes: must be a positive size, got 0")
        }
        #expect { try RelayConfig.parse(toml: "[upstream]\nbatch_max_bytes = \"1000000TiB\"\n", path: "r.toml").resolve() } throws: { error in
            "\(error)".contains("upstream.batch_max_bytes: must be at most 1.0 GiB, got 1099511627776000000 bytes")
        }
    }

    /// A proxy libcurl cannot use is refused when the relay starts (it would
    /// fail every request), and the message never repeats its password.
    @Test func aProxyLibcurlCannotUseIsRefusedWithoutRepeatingItsPassword() throws {
        for good in ["http://proxy.internal:3128", "proxy.internal:3128", "socks5h://u:pw@10.0.0.1:1080", "https://[::1]:8443", "HTTP://p"] {
            #expect(RelayConfig.proxyProblem(good) == nil, "\(good)")
        }
        func problem(_ proxy: String) -> String {
            do {
                _ = try RelayConfig.parse(toml: "[upstream]\nproxy = \"\(proxy)\"\n", path: "r.toml").resolve()
                return ""
            } catch { return "\(error)" }
        }
        let scheme = problem("socks9://relay:hunter2@proxy:1080")
        #expect(scheme.contains(#"upstream.proxy: unsupported scheme "socks9""#) && !scheme.contains("hunter2"), "\(scheme)")
        let port = problem("http://relay:hunter2@proxy:99999")
        #expect(port.contains("upstream.proxy: port 99999 of proxy is out of range") && !port.contains("hunter2"), "\(port)")
        let shape = problem("http://relay:hunter2")
        #expect(shape.contains("upstream.proxy: expected [scheme://][user:password@]host[:port]") && !shape.contains("hunter2"), "\(shape)")
        // libcurl refuses a space and quotes the whole value when it does.
        let space = problem("http://relay:hunter2 x@proxy:3128")
        #expect(space.contains("upstream.proxy: it contains a space or a control character") && !space.contains("hunter2"), "\(space)")
        // Before "://" may lie a password: a scheme is named only when it looks like one.
        let hidden = problem("tok3n@proxy:3128/?u=http://x")
        #expect(hidden.contains("upstream.proxy: unsupported scheme (use") && !hidden.contains("tok3n"), "\(hidden)")
        #expect(RelayConfig.proxyProblem("socks://127.0.0.1:1080/") == nil, "libcurl takes socks:// as SOCKS4")
    }

    /// What the system says, not a framework's guess ("You don't have
    /// permission" for a directory, once).
    @Test func aFileThatCannotBeReadSaysWhy() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("unreadable-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect { try RelayConfig.load(path: dir) } throws: { "\($0)".contains("cannot read config file \(dir): Is a directory") }
        try Data([0x5B, 0xFF, 0xFE, 0x5D]).write(to: URL(fileURLWithPath: dir + "/latin1.toml"))
        #expect { try RelayConfig.load(path: dir + "/latin1.toml") } throws: { "\($0)".contains("it is not UTF-8 text") }
        #expect(try RelayConfig.load(path: "/dev/null").upstream == nil, "an empty file is the defaults")
    }

    @Test func syntaxErrorsNameTheLineOnOneLine() {
        #expect { try RelayConfig.parse(toml: "[upstream]\nurl = \n", path: "r.toml") } throws: { error in
            "\(error)".hasPrefix("r.toml:2:") && "\(error)".contains("TOML syntax error") && !"\(error)".contains("\n")
        }
    }

    @Test func unknownKeysAndWrongTypesNameTheKeyAndLine() {
        #expect { try RelayConfig.parse(toml: "[spool]\n\nmax_byte = 5\n", path: "r.toml") } throws: { error in
            "\(error)" == #"r.toml:3: unknown key "spool.max_byte" (did you mean "spool.max_bytes"?)"#
        }
        #expect { try RelayConfig.parse(toml: "[spool]\nfrobnicate = 5\n", path: "r.toml") } throws: { error in
            "\(error)" == #"r.toml:2: unknown key "spool.frobnicate""#
        }
        #expect { try RelayConfig.parse(toml: "[listen]\ntcp = 8787\n", path: "r.toml") } throws: { error in
            "\(error)" == "r.toml:2: listen.tcp: expected a string, found an integer (8787)"
        }
        #expect { try RelayConfig.parse(toml: "[upstream]\nurl = \"http://127.0.0.1:1\"\ngzip = \"yes\"  # on\n", path: "r.toml") } throws: { error in
            "\(error)" == #"r.toml:3: upstream.gzip: expected true or false, found a string ("yes")"#
        }
        #expect { try RelayConfig.parse(toml: "[spool]\nmax_bytes = 1.5 # GiB\n", path: "r.toml") } throws: { error in
            "\(error)" == "r.toml:2: spool.max_bytes: expected \(ByteSize.expected), found a decimal number (1.5)"
        }
    }

    /// One run of check-config lists everything to fix in the file, in file order.
    @Test func everyWrongTypeAndUnknownKeyIsReportedAtOnce() {
        let toml = """
            [upstream]
            flush_interval_ms = "fast"
            max_batch_count = 100
            [spool]
            max_bytes = "lots"
            [limits]
            accepted_write_keys = [1, 2]
            [upstrem]
            url = "http://127.0.0.1:1"
            """
        #expect { try RelayConfig.parse(toml: toml, path: "r.toml") } throws: { error in
            "\(error)" == """
                r.toml:2: upstream.flush_interval_ms: expected an integer, found a string ("fast")
                r.toml:3: unknown key "upstream.max_batch_count" (did you mean "upstream.batch_max_messages"?)
                r.toml:5: spool.max_bytes: expected \(ByteSize.expected), got "lots"
                r.toml:7: limits.accepted_write_keys: expected an array of strings, found an array ([1, 2])
                r.toml:8: unknown key "upstrem" (did you mean "upstream"?)
                """
        }
    }

    @Test func badValuesAreListedWithTheWrongKeysAndABareWordGetsAQuoteHint() {
        #expect { try RelayConfig.parse(toml: "[upstream]\nurll = \"x\"\n[spool]\non_full = \"drop\"\n", path: "r.toml") } throws: { error in
            "\(error)" == #"r.toml:2: unknown key "upstream.urll" (did you mean "upstream.url"?)"# + "\n"
                + #"r.toml:4: spool.on_full: expected "reject" or "drop_oldest", got "drop""#
        }
        #expect { try RelayConfig.parse(toml: "upstream.gzip = \"no\"\n", path: "r.toml") } throws: { error in
            "\(error)" == "r.toml: upstream.gzip: expected true or false"
        }
        #expect { try RelayConfig.parse(toml: "[log]\nlevel = info\n", path: "r.toml") } throws: { error in
            "\(error)".hasPrefix("r.toml:2:") && "\(error)".hasSuffix(#"(a text value needs quotes: level = "info")"#)
        }
        #expect(RelayConfig.quoteHint(line: 1, in: "max_bytes = 12_000 # bytes") == "")
    }

    @Test func aSuggestionIsMadeOnlyWhenItIsTheOneLikelyKey() {
        #expect(RelayConfig.suggestion(for: ["spool", "max_byte"]) == "spool.max_bytes")
        #expect(RelayConfig.suggestion(for: ["upstrem"]) == "upstream")
        #expect(RelayConfig.suggestion(for: ["listen", "write_key"]) == "upstream.write_key", "the same name in another section")
        #expect(RelayConfig.suggestion(for: ["upstream", "max_message_bytes"]) == "limits.max_message_bytes")
        #expect(RelayConfig.suggestion(for: ["upstream", "max_age_days"]) == nil, "max_age_hours counts in other units: 7 would be 7 hours")
        #expect(RelayConfig.suggestion(for: ["upstream", "retry_max_ms"]) == nil, "retry_base_ms and retry_cap_ms are both as likely")
        #expect(RelayConfig.suggestion(for: ["spool", "frobnicate"]) == nil)
    }

    @Test func everyFieldHasAnExpectedTypeForMessages() {
        #expect(RelayConfig.expectedType("listen.tcp") == "a string")
        #expect(RelayConfig.expectedType("listen.allow_remote") == "true or false")
        #expect(RelayConfig.expectedType("upstream.max_in_flight") == "an integer")
        #expect(RelayConfig.expectedType("upstream.max_age_hours") == "a number")
        #expect(RelayConfig.expectedType("spool.max_bytes") == ByteSize.expected)
        #expect(RelayConfig.expectedType("limits.accepted_write_keys") == "an array of strings")
        #expect(RelayConfig.expectedType("log") == "a table")
        #expect(RelayConfig.expectedType("nope.key") == nil)
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
            return text.contains("r.toml:2: listen.tcp: 0.0.0.0 is not a loopback address")
                && text.contains(#"r.toml:4: spool.on_full: expected "reject" or "drop_oldest", got "panic""#)
                && text.contains("r.toml:6: upstream.url: expected an http:// or https:// URL")
                && text.contains("r.toml:7: upstream.batch_max_messages: must be a positive number, got 0")
        }
    }

    @Test func aValueFromTheEnvironmentIsNotBlamedOnTheFile() throws {
        var cfg = try RelayConfig.parse(toml: "[upstream]\nurl = \"http://127.0.0.1:1\"\n", path: "r.toml")
        cfg.applyEnvironment(["PLAINFLOW_RELAY_UPSTREAM_URL": "http://"])
        #expect { try cfg.resolve() } throws: { error in
            "\(error)".hasPrefix("upstream.url: ") && "\(error)".hasSuffix("(set by the environment or a flag)")
        }
    }

    @Test(arguments: ["http://", "https:///v1", "http://exa mple.com", "https://api.example.com?x=1", "http://127.0.0.1:99999", "http://127.0.0.1:0"])
    func anUpstreamURLMustParse(_ url: String) {
        #expect(RelayConfig.urlProblem(url) != nil)
    }

    @Test func aGoodUpstreamURLPasses() {
        #expect(RelayConfig.urlProblem("https://api.example.com") == nil)
        #expect(RelayConfig.urlProblem("http://127.0.0.1:8788/base") == nil)
    }

    @Test func theConfigFileComesFromTheFlagThenTheVariable() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cfg-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "[spool]\npath = \"\(dir)/a.db\"\n".write(toFile: dir + "/a.toml", atomically: true, encoding: .utf8)
        try "[spool]\npath = \"\(dir)/b.db\"\n".write(toFile: dir + "/b.toml", atomically: true, encoding: .utf8)
        let env = [RelayConfig.fileVariable: dir + "/a.toml"]
        #expect(try RelayConfig.locate(flag: nil, environment: env).resolve().spool.path == dir + "/a.db")
        #expect(try RelayConfig.locate(flag: dir + "/b.toml", environment: env).resolve().spool.path == dir + "/b.db")
        #expect(try RelayConfig.locate(flag: nil, environment: env).sourceFinding == ConfigFinding(.ok, "config", "read \(dir)/a.toml"))
        #expect { try RelayConfig.locate(flag: nil, environment: [RelayConfig.fileVariable: dir + "/none.toml"]) } throws: { error in
            "\(error)".hasPrefix("\(dir)/none.toml: no such configuration file (named by PLAINFLOW_RELAY_CONFIG)")
        }
        #expect(RelayConfig().sourceFinding.level == .note)
        #expect(RelayConfig().sourceFinding.message.contains("defaults"))
    }

    /// The proxy libcurl takes from the environment, found as libcurl finds
    /// it; one it cannot use stops the relay at start, by the variable's name.
    @Test func theEnvironmentsProxyIsFoundAsLibcurlFindsItAndCheckedAtStart() throws {
        let https = "https://api.example.com"
        func found(_ env: [String: String], _ upstream: String = https) -> String? {
            EnvironmentProxy.find(upstream: upstream, environment: env)?.variable
        }
        #expect(found([:]) == nil)
        #expect(found(["https_proxy": "p:1", "HTTPS_PROXY": "q:1", "all_proxy": "r:1"]) == "https_proxy")
        #expect(found(["HTTPS_PROXY": "q:1", "all_proxy": "r:1"]) == "HTTPS_PROXY")
        #expect(found(["https_proxy": "", "ALL_PROXY": "r:1"]) == "ALL_PROXY", "an empty variable is unset")
        #expect(found(["http_proxy": "p:1"]) == nil, "http_proxy is for http:// URLs")
        #expect(found(["HTTP_PROXY": "p:1"], "http://127.0.0.1:8788") == nil, "libcurl never reads HTTP_PROXY")
        #expect(found(["http_proxy": "p:1"], "http://127.0.0.1:8788") == "http_proxy")
        for exempt in ["*", "example.com", ".example.com", "other, api.example.com", "API.example.com."] {
            #expect(found(["https_proxy": "p:1", "no_proxy": exempt]) == nil, "\(exempt)")
        }
        for notExempt in ["ample.com", "www.example.com", "*.example.com", ""] {
            #expect(found(["https_proxy": "p:1", "no_proxy": notExempt]) == "https_proxy", "\(notExempt)")
        }
        #expect(found(["https_proxy": "p:1", "NO_PROXY": "example.com"]) == nil)
        #expect(found(["http_proxy": "p:1", "no_proxy": "127.0.0.0/8"], "http://127.0.0.1:8788") == nil)
        #expect(found(["http_proxy": "p:1", "no_proxy": "10.0.0.0/8"], "http://127.0.0.1:8788") == "http_proxy")
        #expect(found(["http_proxy": "p:1", "no_proxy": "::1"], "http://[::1]:8788") == nil)
        #expect(found(["http_proxy": "p:1", "no_proxy": "::1"], "http://[0:0::1]:8788") == nil, "libcurl writes the address short")
        #expect(found(["http_proxy": "p:1", "no_proxy": "::1/128"], "http://[::1]:8788") == "http_proxy", "libcurl 7.88 matches no IPv6 range")
        // As libcurl 7.88 reads no_proxy: an IPv4 host against addresses only, the bits as atoi reads them.
        let local = "http://127.0.0.1:8788"
        for exempt in ["127.0.0.1/", "127.0.0.0/8x", "127.0.0.0/8.0", "127.0.0.1/0", "127.0.0.1/32"] {
            #expect(found(["http_proxy": "p:1", "no_proxy": exempt], local) == nil, "\(exempt)")
        }
        for notExempt in ["127.0.0.0/0", "1", "0.1", ".127.0.0.1", "127.0.0.1.", "127.0.0.0/33", "127.0.0.0/-8", " * ", "*,"] {
            #expect(found(["http_proxy": "p:1", "no_proxy": notExempt], local) == "http_proxy", "\(notExempt)")
        }
        #expect(found(["http_proxy": "p:1", "no_proxy": "127.0.0.1"], "http://127.1:8788") == nil, "libcurl reads 127.1 as 127.0.0.1")
        #expect(found(["https_proxy": "p:1", "no_proxy": "example.com"], "https://api.example.com./") == nil, "a dot after the host")
        #expect(EnvironmentProxy.find(upstream: https, environment: ["https_proxy": "socks5h://u:pw@10.0.0.1:1080"])?.endpoint == "10.0.0.1:1080")
        #expect(EnvironmentProxy.find(upstream: https, environment: ["https_proxy": "u:pw@proxy.internal"])?.endpoint == "proxy.internal:1080")
        #expect(EnvironmentProxy.find(upstream: https, environment: ["https_proxy": "https://proxy.internal"])?.endpoint == "proxy.internal:443")
        let printed = EnvironmentProxy.find(upstream: https, environment: ["https_proxy": "http://u:hunter2@proxy.internal:3128"])
        #expect("\(String(describing: printed))".contains("https_proxy (proxy.internal:3128)") && !"\(String(reflecting: printed))".contains("hunter2"))

        let settings = try RelayConfig.parse(toml: "[upstream]\nurl = \"\(https)\"\n", path: "r.toml").resolve()
        let bad = settings.usabilityFindings(environment: ["HTTPS_PROXY": "socks9://relay:hunter2@proxy:1080"]).filter { $0.level == .problem && $0.subject == "upstream" }
        #expect(bad.count == 1, "\(bad)")
        #expect(bad.first?.message.hasPrefix(#"HTTPS_PROXY in the environment, the proxy libcurl would use for https://api.example.com: unsupported scheme "socks9""#) == true, "\(bad)")
        #expect(bad.first?.message.contains("hunter2") == false)
        let good = settings.usabilityFindings(environment: ["HTTPS_PROXY": "http://relay:hunter2@proxy.internal:3128"])
        #expect(good.allSatisfy { $0.level != .problem || $0.subject != "upstream" })
        #expect(good.contains { $0.message.hasSuffix("through the proxy at proxy.internal:3128 (from HTTPS_PROXY in the environment)") }, "\(good)")
        #expect(!good.contains { $0.message.contains("hunter2") })
        // upstream.proxy takes the environment's place, as in libcurl.
        let configured = try RelayConfig.parse(toml: "[upstream]\nurl = \"\(https)\"\nproxy = \"proxy.internal:3128\"\n", path: "r.toml").resolve()
        #expect(configured.usabilityFindings(environment: ["https_proxy": "socks9://x"]).allSatisfy { $0.level != .problem || $0.subject != "upstream" })
    }

    @Test func usabilityNamesAMissingSpoolOrSocketDirectory() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cfg-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var good = RelayConfig()
        good.spool = .init(); good.spool!.path = dir + "/spool.db"
        good.listen = .init(); good.listen!.unix = dir + "/relay.sock"
        #expect(try good.resolve().usabilityFindings(environment: [:]).allSatisfy { $0.level != .problem })
        var bad = good
        bad.spool!.path = dir + "/missing/spool.db"
        bad.listen!.unix = dir + "/gone/relay.sock"
        let problems = try bad.resolve().usabilityFindings(environment: [:]).filter { $0.level == .problem }
        #expect(problems.map(\.subject) == ["spool", "listen.unix"])
        #expect(problems[0].message.contains("the directory \(dir)/missing does not exist"))
        #expect(problems[1].message.contains("the directory \(dir)/gone does not exist"))
    }

    @Test func sizesReadForPeople() {
        #expect(ByteCount.format(512) == "512 B")
        #expect(ByteCount.format(1536) == "1.5 KiB")
        #expect(ByteCount.format(1 << 30) == "1.0 GiB")
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

    @Test func aRequestRateThatIsNotAFinitePositiveNumberIsRefusedByName() throws {
        for value in ["inf", "nan", "0", "-5"] {
            let cfg = try RelayConfig.parse(toml: "[upstream]\nmax_requests_per_second = \(value)\n", path: "r.toml")
            #expect { try cfg.resolve() } throws: { error in
                "\(error)".contains("r.toml:2: upstream.max_requests_per_second: must be a positive number")
            }
        }
    }

    @Test func anEmptyWriteKeyMeansAppsSendTheirOwn() throws {
        let s = try RelayConfig.parse(toml: "[upstream]\nwrite_key = \"\"\n", path: "r.toml").resolve()
        #expect(s.forward.writeKey == nil)
        #expect(!s.ingest.relayHasWriteKey)
    }

    @Test func relativePathsInTheFileAreRelativeToItsDirectoryNotToTheWorkingDirectory() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("cfg-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root + "/etc", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/run", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        try "k-from-etc\n".write(toFile: root + "/etc/key", atomically: true, encoding: .utf8)
        try """
            [listen]
            unix = "../run/relay.sock"
            [upstream]
            write_key_file = "key"
            ca_file = "ca.pem"
            [spool]
            path = "../run/spool.db"
            """.write(toFile: root + "/etc/relay.toml", atomically: true, encoding: .utf8)
        let settings = try RelayConfig.load(path: root + "/etc/relay.toml").resolve()
        #expect(settings.spool.path == root + "/etc/../run/spool.db")
        #expect(settings.ingest.unixPath == root + "/etc/../run/relay.sock")
        #expect(settings.forward.writeKey == "k-from-etc")
        #expect(settings.forward.transport.caFile == root + "/etc/ca.pem")

        // The file named by a relative path (`--config ../../tmp/…/etc/relay.toml`): the same places.
        let cwd = FileManager.default.currentDirectoryPath
        let up = String(repeating: "../", count: cwd.split(separator: "/").count)
        let fromRelative = try RelayConfig.load(path: up + root.dropFirst() + "/etc/relay.toml").resolve()
        #expect(fromRelative.forward.writeKey == "k-from-etc")
        #expect(fromRelative.spool.path == cwd + "/" + up + root.dropFirst() + "/etc/../run/spool.db")
        #expect(FileManager.default.fileExists(atPath: (fromRelative.spool.path as NSString).deletingLastPathComponent))

        // A path from the environment or a flag is the command line's: relative to the working directory.
        var overridden = try RelayConfig.load(path: root + "/etc/relay.toml")
        overridden.applyEnvironment(["PLAINFLOW_RELAY_SPOOL": "here/spool.db", "PLAINFLOW_RELAY_UNIX": "/abs/relay.sock"])
        let fromEnvironment = try overridden.resolve()
        #expect(fromEnvironment.spool.path == "here/spool.db")
        #expect(fromEnvironment.ingest.unixPath == "/abs/relay.sock")
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
