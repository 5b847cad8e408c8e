// ISO-8601 dates as the message rules need them: a strict check for what an
// app sends (`timestamp`, date traits) and a millisecond UTC formatter for what
// the relay stamps (`received_at`). Parsing is FoundationEssentials' own; the
// shape nearly every SDK sends (`2017-02-09T12:08:32.111Z`, or an offset) is
// read by integer arithmetic first, because Foundation's parser cost about
// 5% of a call's CPU, and it accepts only what Foundation accepts too (a unit
// test compares the two), leaving anything else to Foundation.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// ISO-8601 parsing and formatting.
public enum ISO8601 {
    private static let withFraction = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
    private static let withoutFraction = Date.ISO8601FormatStyle()
    private static let dateOnly = Date.ISO8601FormatStyle().year().month().day()

    /// Parses a full ISO-8601 date-time (`2017-02-09T12:08:32.111Z`, with or
    /// without fractional seconds, `Z` or an offset such as `+01:00`).
    public static func parseDateTime(_ s: String) -> Date? {
        guard s.utf8.count >= 20, s.utf8.count <= 40 else { return nil }
        if let millis = commonDateTimeMillis(s) { return Date(timeIntervalSince1970: Double(millis) / 1000) }
        if let d = try? withFraction.parse(s) { return d }
        return try? withoutFraction.parse(s)
    }

    /// Parses an ISO-8601 calendar date (`1990-05-17`), a full date-time, or
    /// a local date-time without a zone (`2017-02-09T12:08:32`, read as UTC:
    /// what Python's `isoformat()` makes of a naive `datetime`, which the
    /// Python SDKs send as is for a date trait such as `created_at`).
    public static func parseDateOrDateTime(_ s: String) -> Date? {
        if s.utf8.count == 10 { return try? dateOnly.parse(s) }
        if let d = parseDateTime(s) { return d }
        return isLocalDateTime(s) ? parseDateTime(s + "Z") : nil
    }

    /// Unix milliseconds of `YYYY-MM-DDTHH:MM:SS`, an optional `.mmm`, then
    /// `Z` or `±HH:MM` (at most 14 hours, as real zones are), every field in
    /// its range (the day in its month) and the year from 1600 (Foundation's
    /// calendar is Julian before 1582); nil for any other shape or value,
    /// which Foundation then decides.
    static func commonDateTimeMillis(_ s: String) -> Int64? {
        var s = s
        return s.withUTF8 { b -> Int64? in
            let n = b.count
            guard n == 20 || n == 24 || n == 25 || n == 29 else { return nil }
            func digits(_ at: Int, _ count: Int) -> Int? {
                var v = 0
                for i in at..<(at + count) {
                    let d = b[i] &- UInt8(ascii: "0")
                    guard d < 10 else { return nil }
                    v = v * 10 + Int(d)
                }
                return v
            }
            guard b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-"), b[10] == UInt8(ascii: "T"),
                  b[13] == UInt8(ascii: ":"), b[16] == UInt8(ascii: ":"),
                  let year = digits(0, 4), let month = digits(5, 2), let day = digits(8, 2),
                  let hour = digits(11, 2), let minute = digits(14, 2), let second = digits(17, 2)
            else { return nil }
            var at = 19
            var ms = 0
            if b[at] == UInt8(ascii: ".") {
                guard n >= 24, let fraction = digits(20, 3) else { return nil }
                ms = fraction
                at = 23
            }
            var offsetMinutes = 0
            if b[at] == UInt8(ascii: "Z") {
                guard n == at + 1 else { return nil }
            } else if b[at] == UInt8(ascii: "+") || b[at] == UInt8(ascii: "-") {
                guard n == at + 6, b[at + 3] == UInt8(ascii: ":"),
                      let oh = digits(at + 1, 2), let om = digits(at + 4, 2), oh <= 14, om < 60
                else { return nil }
                offsetMinutes = (oh * 60 + om) * (b[at] == UInt8(ascii: "-") ? -1 : 1)
            } else {
                return nil
            }
            let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
            let monthDays: Int
            switch month {
            case 2: monthDays = leap ? 29 : 28
            case 4, 6, 9, 11: monthDays = 30
            default: monthDays = 31
            }
            guard year >= 1600, (1...12).contains(month), day >= 1, day <= monthDays,
                  hour < 24, minute < 60, second < 60
            else { return nil }
            // Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
            let y = month <= 2 ? year - 1 : year
            let era = y / 400
            let yoe = y - era * 400
            let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
            let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
            let days = era * 146_097 + doe - 719_468
            let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offsetMinutes * 60
            return Int64(seconds) * 1000 + Int64(ms)
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS`, optionally with a fraction, and nothing after it.
    static func isLocalDateTime(_ s: String) -> Bool {
        let b = Array(s.utf8)
        guard b.count >= 19, b.count <= 29, b[10] == UInt8(ascii: "T") else { return false }
        let digit = { (c: UInt8) in c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }
        for (i, c) in b.enumerated() {
            switch i {
            case 4, 7: if c != UInt8(ascii: "-") { return false }
            case 10: continue
            case 13, 16: if c != UInt8(ascii: ":") { return false }
            case 19: if c != UInt8(ascii: ".") || b.count == 20 { return false }
            default: if !digit(c) { return false }
            }
        }
        return true
    }

    /// Formats `date`, rounded to the millisecond, as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    public static func format(_ date: Date) -> String {
        format(millis: Int64((date.timeIntervalSince1970 * 1000).rounded()))
    }

    /// Formats unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC), exactly:
    /// integer arithmetic, no floating point, no locale.
    public static func format(millis: Int64) -> String {
        let ms = Int(((millis % 1000) + 1000) % 1000)
        let seconds = (millis - Int64(ms)) / 1000
        var days = Int(seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400)
        let secOfDay = Int(seconds - Int64(days) * 86_400)
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        days += 719_468
        let era = (days >= 0 ? days : days - 146_096) / 146_097
        let doe = days - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        if (0...9999).contains(year) {
            // Every field has its fixed width: 24 ASCII bytes written in place
            // (what the interpolation below gives, without its temporaries).
            return String(unsafeUninitializedCapacity: 24) { out in
                func put(_ v: Int, _ width: Int, at: Int) {
                    var v = v
                    for k in stride(from: at + width - 1, through: at, by: -1) {
                        out[k] = UInt8(ascii: "0") + UInt8(v % 10)
                        v /= 10
                    }
                }
                put(year, 4, at: 0); out[4] = UInt8(ascii: "-")
                put(month, 2, at: 5); out[7] = UInt8(ascii: "-")
                put(day, 2, at: 8); out[10] = UInt8(ascii: "T")
                put(secOfDay / 3600, 2, at: 11); out[13] = UInt8(ascii: ":")
                put(secOfDay / 60 % 60, 2, at: 14); out[16] = UInt8(ascii: ":")
                put(secOfDay % 60, 2, at: 17); out[19] = UInt8(ascii: ".")
                put(ms, 3, at: 20); out[23] = UInt8(ascii: "Z")
                return 24
            }
        }
        func pad(_ v: Int, _ width: Int) -> String {
            let s = String(v)
            return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(secOfDay / 3600, 2)):\(pad(secOfDay / 60 % 60, 2)):\(pad(secOfDay % 60, 2)).\(pad(ms, 3))Z"
    }
}
