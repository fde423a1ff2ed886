"""``wallmesh doctor sfu`` against a real Janus: what it says when all is well and when it is not."""

from __future__ import annotations

from appliance.config import build
from appliance.signaling.config import SignalConfig
from appliance.fleet.doctor.sfu import check_sfu


def _config(**sfu) -> SignalConfig:
    return build(SignalConfig, {"sfu": sfu} if sfu else {}, "<test>")


async def test_doctor_passes_a_janus_set_up_as_wallmesh_writes_it(janus) -> None:
    findings = await check_sfu(_config(type="janus", url=janus.url), janus.state_dir)
    assert [f.status for f in findings] == ["ok", "ok"], findings
    assert "answers at" in findings[0].summary


async def test_doctor_names_what_is_wrong(janus, tmp_path) -> None:
    assert [f.status for f in await check_sfu(_config(), tmp_path)] == ["skip"]
    # no secrets where the server keeps them
    (missing,) = await check_sfu(_config(type="janus", url=janus.url), tmp_path / "nowhere")
    assert missing.status == "fail" and "secrets" in missing.summary
    # a secret Janus does not take
    (tmp_path / "janus-api-secret").write_text("wrong\n")
    (tmp_path / "janus-admin-key").write_text((janus.state_dir / "janus-admin-key").read_text())
    found = await check_sfu(_config(type="janus", url=janus.url), tmp_path)
    assert found[-1].status == "fail" and "API secret" in found[-1].summary, found
    # a wrong admin key
    (tmp_path / "janus-api-secret").write_text((janus.state_dir / "janus-api-secret").read_text())
    (tmp_path / "janus-admin-key").write_text("wrong\n")
    found = await check_sfu(_config(type="janus", url=janus.url), tmp_path)
    assert found[-1].status == "fail" and "admin key" in found[-1].summary, found
    # nobody home
    down = await check_sfu(_config(type="janus", url="http://127.0.0.1:9/janus"), janus.state_dir, timeout_s=1.0)
    assert down[0].status == "fail" and "does not answer" in down[0].summary
