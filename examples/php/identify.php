<?php
// One identify to plainflow-relay: the line protocol over its Unix socket
// (stream_socket_client) and HTTP over TCP (PHP's http stream wrapper), with
// php-cli alone. A 503 (the relay cannot store the call now) is retried
// after the Retry-After (HTTP header, or "retry_after" in the reply line)
// with the same message_id: the relay stores it once.
//
//   PLAINFLOW_RELAY_SOCKET=/run/plainflow-relay/relay.sock \
//   PLAINFLOW_RELAY_URL=http://127.0.0.1:8787 php identify.php [USER_ID]

const ATTEMPTS = 5;
$socket = getenv('PLAINFLOW_RELAY_SOCKET') ?: '/run/plainflow-relay/relay.sock';
$url = getenv('PLAINFLOW_RELAY_URL') ?: 'http://127.0.0.1:8787';

function new_message(string $userId): array
{
    $b = random_bytes(16);
    $b[6] = chr(ord($b[6]) & 0x0f | 0x40);
    $b[8] = chr(ord($b[8]) & 0x3f | 0x80);
    $id = vsprintf('%s%s-%s-%s-%s-%s%s%s', str_split(bin2hex($b), 4));
    return ['type' => 'identify', 'user_id' => $userId, 'message_id' => $id,
            'traits' => ['firstName' => 'Ada', 'lastName' => 'Lovelace', 'email' => 'ada@example.com',
                         'plan' => 'premium', 'logins' => 5]];
}

// The line protocol: one JSON call per line, one JSON reply line per call, in order.
function identify_line(string $socket, string $userId): array
{
    $message = new_message($userId);
    $conn = stream_socket_client("unix://$socket", $errno, $error, 30);
    if ($conn === false) {
        throw new RuntimeException("cannot connect to $socket: $error");
    }
    stream_set_timeout($conn, 30);
    for ($i = 0; $i < ATTEMPTS; $i++) {
        fwrite($conn, json_encode($message) . "\n");
        $reply = fgets($conn);
        if ($reply === false) {
            throw new RuntimeException('unix: no reply from the relay');
        }
        $answer = json_decode($reply, true);
        $status = !empty($answer['ok']) ? 200 : $answer['status'];
        echo "unix $status {$message['message_id']}\n";
        if ($status == 200) {
            return $answer;
        }
        if ($status != 503) {
            throw new RuntimeException("unix: refused ($status): " . implode('; ', $answer['errors']));
        }
        sleep($answer['retry_after'] ?? 5);  // not stored: the same line again, later
    }
    throw new RuntimeException('unix: still 503 after ' . ATTEMPTS . ' attempts');
}

function identify_http(string $url, string $userId): array
{
    $message = new_message($userId);
    for ($i = 0; $i < ATTEMPTS; $i++) {
        $context = stream_context_create(['http' => [
            'method' => 'POST', 'header' => "Content-Type: application/json\r\n",
            'content' => json_encode($message), 'timeout' => 30, 'ignore_errors' => true,
        ]]);
        $body = @file_get_contents("$url/v1/identify", false, $context);
        if ($body === false) {
            throw new RuntimeException("tcp: cannot reach $url");
        }
        // $http_response_header: the status line, then the headers.
        preg_match('{^HTTP/\S+ (\d+)}', $http_response_header[0], $m);
        $status = (int)$m[1];
        $answer = json_decode($body, true);
        echo "tcp $status {$message['message_id']}\n";
        if ($status == 200 && !empty($answer['ok'])) {
            return $answer;
        }
        if ($status != 503) {
            throw new RuntimeException("tcp: refused ($status): " . implode('; ', $answer['errors'] ?? []));
        }
        $wait = 5;
        foreach ($http_response_header as $h) {
            if (preg_match('/^Retry-After:\s*(\d+)/i', $h, $r)) {
                $wait = (int)$r[1];
            }
        }
        sleep($wait);
    }
    throw new RuntimeException('tcp: still 503 after ' . ATTEMPTS . ' attempts');
}

$userId = $argv[1] ?? '97980cfea0067';
try {
    identify_line($socket, $userId);
    identify_http($url, $userId);
} catch (RuntimeException $e) {
    fwrite(STDERR, 'identify failed: ' . $e->getMessage() . "\n");
    exit(1);
}
