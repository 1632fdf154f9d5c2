import datetime
import ipaddress

from cryptography import x509

from llmops_sandbox.certs import create_pki
from llmops_sandbox.kubelet_api import select_log_lines

LOG = (b"--- 2024 starting ['a']\nfirst run 1\nfirst run 2\n"
       b"--- 2024 starting ['a']\nsecond run 1\nsecond run 2\nsecond run 3\n")


def test_current_run_tail_and_previous_run():
    assert select_log_lines(LOG, None, False) == b"second run 1\nsecond run 2\nsecond run 3\n"
    assert select_log_lines(LOG, 2, False) == b"second run 2\nsecond run 3\n"
    assert select_log_lines(LOG, 0, False) == b""
    assert select_log_lines(LOG, None, True) == b"first run 1\nfirst run 2\n"
    assert select_log_lines(b"--- 2024 starting ['a']\nonly\n", None, True) == b""


def test_pki_serving_cert_covers_loopback_and_gateway(tmp_path):
    pki = create_pki(tmp_path, ["127.0.0.1", "10.244.0.1"])
    cert = x509.load_pem_x509_certificate(pki.serving_cert.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.IPAddress)) == {ipaddress.ip_address("127.0.0.1"),
                                                              ipaddress.ip_address("10.244.0.1")}
    assert "kubernetes.default.svc" in sans.get_values_for_type(x509.DNSName)
    assert cert.not_valid_after_utc > datetime.datetime.now(datetime.timezone.utc)
    assert pki.token_file.read_text() == f'{pki.admin_token},admin,admin,"system:masters"\n'
    assert oct(pki.ca_key.stat().st_mode & 0o777) == "0o600"
