#!/usr/bin/env tclsh
# One identify to plainflow-relay: HTTP over TCP (Tcl's http package) and
# the line protocol over its Unix socket. Tcl's own sockets are TCP only,
# so the socket is reached through a pipe to socat, the classic Tcl way to
# borrow what the core lacks. A 503 (the relay cannot store the call now) is
# retried after the Retry-After (HTTP header, or "retry_after" in the reply
# line) with the same message_id: the relay stores it once.
#
#   PLAINFLOW_RELAY_SOCKET=/run/plainflow-relay/relay.sock \
#   PLAINFLOW_RELAY_URL=http://127.0.0.1:8787 tclsh identify.tcl [USER_ID]
package require http

set socket [expr {[info exists env(PLAINFLOW_RELAY_SOCKET)] ? $env(PLAINFLOW_RELAY_SOCKET) : "/run/plainflow-relay/relay.sock"}]
set url [expr {[info exists env(PLAINFLOW_RELAY_URL)] ? $env(PLAINFLOW_RELAY_URL) : "http://127.0.0.1:8787"}]
set userId [expr {$argc > 0 ? [lindex $argv 0] : "97980cfea0067"}]
set attempts 5

proc newMessage {userId} {
    set f [open /proc/sys/kernel/random/uuid]
    set id [string trim [read $f]]
    close $f
    # (userId goes in as is: a real program escapes it, e.g. with tcllib's json::write.)
    set json [format {{"type":"identify","user_id":"%s","message_id":"%s","traits":{"firstName":"Ada","lastName":"Lovelace","email":"ada@example.com","plan":"premium","logins":5}}} $userId $id]
    return [list $id $json]
}

# The line protocol: one JSON call per line, one JSON reply line per call, in order.
proc identifyLine {socket userId attempts} {
    lassign [newMessage $userId] id json
    set chan [open [list |socat - UNIX-CONNECT:$socket] r+]
    fconfigure $chan -buffering line -encoding utf-8
    for {set i 0} {$i < $attempts} {incr i} {
        puts $chan $json
        if {[gets $chan reply] < 0} { error "unix: the relay closed the connection" }
        if {[string match {*"ok":true*} $reply]} { set status 200 } else { regexp {"status":(\d+)} $reply -> status }
        puts "unix $status $id"
        if {$status == 200} { close $chan; return }
        if {$status != 503} { error "unix: refused ($status): $reply" }
        set wait 5
        regexp {"retry_after":(\d+)} $reply -> wait
        after [expr {$wait * 1000}]  ;# not stored: the same line again, later
    }
    error "unix: still 503 after $attempts attempts"
}

proc identifyHTTP {url userId attempts} {
    lassign [newMessage $userId] id json
    for {set i 0} {$i < $attempts} {incr i} {
        set token [http::geturl $url/v1/identify -query [encoding convertto utf-8 $json] -type application/json -timeout 30000]
        set status [http::ncode $token]
        set body [http::data $token]
        set wait 5
        foreach {name value} [http::meta $token] {
            if {[string equal -nocase $name Retry-After]} { set wait $value }
        }
        http::cleanup $token
        puts "tcp $status $id"
        if {$status == 200 && [string match {*"ok":true*} $body]} { return }
        if {$status != 503} { error "tcp: refused ($status): $body" }
        after [expr {$wait * 1000}]
    }
    error "tcp: still 503 after $attempts attempts"
}

if {[catch {
    identifyLine $socket $userId $attempts
    identifyHTTP $url $userId $attempts
} message]} {
    puts stderr "identify failed: $message"
    exit 1
}
