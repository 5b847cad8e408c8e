#!/usr/bin/perl
# One identify to plainflow-relay: the line protocol over its Unix socket
# (IO::Socket::UNIX) and HTTP over TCP (HTTP::Tiny), core modules only.
# A 503 (the relay cannot store the call now) is retried after the
# Retry-After (HTTP header, or "retry_after" in the reply line) with the
# same message_id: the relay stores it once.
#
#   PLAINFLOW_RELAY_SOCKET=/run/plainflow-relay/relay.sock \
#   PLAINFLOW_RELAY_URL=http://127.0.0.1:8787 perl identify.pl [USER_ID]
use strict;
use warnings;
use HTTP::Tiny;
use IO::Socket::UNIX;
use JSON::PP;

my $SOCKET = $ENV{PLAINFLOW_RELAY_SOCKET} // '/run/plainflow-relay/relay.sock';
my $URL    = $ENV{PLAINFLOW_RELAY_URL}    // 'http://127.0.0.1:8787';
my $ATTEMPTS = 5;
my $json = JSON::PP->new->canonical;
$| = 1;

sub new_message {
    my ($user_id) = @_;
    open my $fh, '<', '/proc/sys/kernel/random/uuid' or die "no uuid: $!";
    chomp(my $id = <$fh>);
    return { type => 'identify', user_id => $user_id, message_id => $id,
             traits => { firstName => 'Ada', lastName => 'Lovelace', email => 'ada@example.com',
                         plan => 'premium', logins => 5 } };
}

# The line protocol: one JSON call per line, one JSON reply line per call, in order.
sub identify_line {
    my ($user_id) = @_;
    my $message = new_message($user_id);
    my $line = $json->encode($message) . "\n";
    my $sock = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $SOCKET)
        or die "cannot connect to $SOCKET: $!\n";
    for (1 .. $ATTEMPTS) {
        print {$sock} $line;
        my $reply = <$sock> // die "unix: the relay closed the connection\n";
        my $answer = $json->decode($reply);
        my $status = $answer->{ok} ? 200 : $answer->{status};
        print "unix $status $message->{message_id}\n";
        return $answer if $status == 200;
        die "unix: refused ($status): " . join('; ', @{ $answer->{errors} }) . "\n" if $status != 503;
        sleep($answer->{retry_after} // 5);    # not stored: the same line again, later
    }
    die "unix: still 503 after $ATTEMPTS attempts\n";
}

sub identify_http {
    my ($user_id) = @_;
    my $message = new_message($user_id);
    my $http = HTTP::Tiny->new(timeout => 30);
    for (1 .. $ATTEMPTS) {
        my $res = $http->post("$URL/v1/identify", {
            headers => { 'Content-Type' => 'application/json' },
            content => $json->encode($message),
        });
        die "tcp: $res->{content}\n" if $res->{status} == 599;    # HTTP::Tiny: could not connect
        my $answer = $json->decode($res->{content} || '{}');
        print "tcp $res->{status} $message->{message_id}\n";
        return $answer if $res->{status} == 200 && $answer->{ok};
        die "tcp: refused ($res->{status}): " . join('; ', @{ $answer->{errors} // [] }) . "\n" if $res->{status} != 503;
        sleep($res->{headers}{'retry-after'} // 5);
    }
    die "tcp: still 503 after $ATTEMPTS attempts\n";
}

my $user_id = shift // '97980cfea0067';
eval { identify_line($user_id); identify_http($user_id); 1 } or do { print STDERR "identify failed: $@"; exit 1 };
