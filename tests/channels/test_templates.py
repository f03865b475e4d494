"""Channel parts that providers read, rendered by the engine's own template code."""

from __future__ import annotations

import json

from engine.channels import get_channel
from engine.channels.providers.aliyun import AliyunSms
from engine.channels.senders import OutboundMessage
from engine.rendering import compile_template_parts

ALIYUN_TEMPLATE = """\
{% block template_code %}SMS_298765432{% endblock %}
{% block template_param %}{"name": {{ profile.name | tojson }}, "hours": "48"}{% endblock %}
{% block text %}【悦品商城】{{ profile.name }}，您的购物车还在等您！回T退订{% endblock %}
"""


def test_an_aliyun_template_renders_to_what_sendsms_takes() -> None:
    sms = get_channel("sms")
    assert sms is not None
    parts, problems = compile_template_parts(ALIYUN_TEMPLATE, "coupon.sms.j2", sms)
    assert problems == []
    content = parts.render({"profile": {"name": '李"伟'}})
    sender = AliyunSms("LTAI", "secret", "悦品商城", "http://127.0.0.1:9")
    params = sender.params(OutboundMessage("msg_t1", "sms", "+8613800138000", content))
    assert params["TemplateCode"] == "SMS_298765432"
    assert json.loads(params["TemplateParam"]) == {"name": '李"伟', "hours": "48"}
    sender.close()


def test_whole_file_templates_still_stand_for_the_one_required_part() -> None:
    for channel, part in (("sms", "text"), ("wecom", "content")):
        spec = get_channel(channel)
        assert spec is not None and spec.single_part == part
        parts, problems = compile_template_parts("Hi {{ profile.name }}", "t.j2", spec)
        assert problems == [] and parts.render({"profile": {"name": "Li"}}) == {part: "Hi Li"}
