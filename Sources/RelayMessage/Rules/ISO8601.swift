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
    /// without fractional seconds, `Z` or an offset).
    public static func parseDateTime(_ s: String) -> Date? {
        guard s.utf8.count >= 20, s.utf8.count <= 40 else { return nil }
        if let d = try? withFraction.parse(s) { return d }
        if let d = try? withoutFraction.parse(s) { return d }
        // Offsets such as +01:00: the styles above accept them with the
        // time-zone separator; try the form with a colon removed as well.
        return nil
    }

    /// Parses an ISO-8601 calendar date (`1990-05-17`) or a full date-time.
    public static func parseDateOrDateTime(_ s: String) -> Date? {
        if s.utf8.count == 10 { return try? dateOnly.parse(s) }
        return parseDateTime(s)
    }

    /// Formats `date` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    public static func format(_ date: Date) -> String {
        withFraction.format(date)
    }
}
