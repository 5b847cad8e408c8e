// ISO-8601 dates as the message rules need them: a strict check for what an
// app sends (`timestamp`, date traits) and a millisecond UTC formatter for what
// the relay stamps (`received_at`). Parsing is FoundationEssentials' own.

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
        func pad(_ v: Int, _ width: Int) -> String {
            let s = String(v)
            return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(secOfDay / 3600, 2)):\(pad(secOfDay / 60 % 60, 2)):\(pad(secOfDay % 60, 2)).\(pad(ms, 3))Z"
    }
}
