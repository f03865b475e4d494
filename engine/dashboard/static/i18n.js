/* Words of the dashboard in English and Simplified Chinese. t(key, values) looks one up. */
"use strict";

window.I18N = {
  en: {
    brand: "Journey engine",
    "nav.journeys": "Journeys", "nav.users": "User timeline", "nav.ops": "Operations",
    "nav.deadLetters": "Dead letters", "nav.audit": "Audit log",
    logout: "Sign out", footer: "Counts are read live from the engine's database.",
    loading: "Loading…", error: "Could not load: {0}", none: "Nothing yet.",
    "journeys.title": "Journeys", "journeys.deployment": "Deployment {0} · version {1} · deployed {2}",
    "journeys.empty": "Nothing is deployed yet: run journey deploy DIR.",
    "status.running": "Running", "status.paused": "Paused", "status.stopped": "Stopped",
    entered: "Entered", active: "Active", sent: "Sent", delivered: "Delivered", failed: "Failed",
    bounced: "Bounced", suppressed: "Suppressed", waiting: "Waiting", cancelled: "Cancelled",
    pending: "Pending", scheduled: "Scheduled", sending: "Sending", processed: "processed",
    converted: "Converted", reached: "Reached", visits: "Visits", rate: "Conversion rate",
    "journey.graph": "Journey map", "journey.graphHint": "Each step shows how many runs reached it; sends show what went out.",
    "journey.funnel": "Funnel", "journey.conversions": "Conversions", "journey.attribution": "Attribution",
    "journey.splits": "A/B splits", "journey.version": "Version", "journey.current": "deployed now",
    "journey.allVersions": "all versions", "journey.back": "All journeys",
    "journey.noGoal": "This journey has no conversion goal.",
    "conv.goal": "Goal: {0} within {1}", "conv.open": "Window still open",
    "conv.decided": "Rate once windows closed", "conv.of": "{0} of {1} runs",
    "attr.first": "First touch", "attr.last": "Last touch", "attr.linear": "Linear",
    "attr.none": "No conversions to attribute yet.", "attr.unattributed": "{0} conversion(s) had no message before them.",
    "attr.channel": "Channel",
    "split.arm": "Arm", "split.weight": "Weight", "split.runs": "Runs", "split.interval": "{0} interval",
    "split.p": "p vs leader", "split.winner": "{0} wins: the difference is significant",
    "split.notYet": "No significant difference yet", "split.test": "{0}; alpha {1}",
    "split.bonferroni": "({0} per comparison, Bonferroni)", "split.leader": "leader",
    "funnel.entered": "Entered the journey", "funnel.suppressedBy": "Suppressed: {0}",
    "kind.wait": "Wait", "kind.wait_for": "Wait for event", "kind.send": "Send",
    "kind.branch": "Branch", "kind.split": "A/B split", "kind.removed": "Removed step", "kind.end": "End",
    "reason.unsubscribed": "unsubscribed", "reason.no_address": "no address",
    "reason.frequency_cap": "frequency cap", "reason.quiet_hours": "quiet hours",
    "reason.undeliverable": "undeliverable", "reason.blocked": "address blocked",
    "users.title": "User timeline", "users.search": "User id (userId or anonymousId)",
    "users.show": "Show timeline", "users.notFound": "No data is held for that user.",
    "users.events": "events", "users.runs": "runs", "users.messages": "messages",
    "tl.event": "Event", "tl.run": "Run", "tl.message": "Message",
    "tl.entered": "entered {0}", "tl.converted": "converted in {0}", "tl.completed": "completed {0}",
    "tl.exited": "exited {0}", "tl.forgotten": "forgotten in {0}", "tl.active": "is in {0}",
    "ops.title": "Operations", "ops.timerLag": "Timer lag", "ops.timersDue": "Timers due",
    "ops.outbox": "Outbox backlog", "ops.events": "Events pending", "ops.deadLetters": "Dead letters",
    "ops.queues": "Celery queue depths", "ops.noBroker": "No broker: this engine runs embedded (or its broker is not Redis).",
    "ops.queue": "Queue", "ops.depth": "Depth", "ops.refreshed": "Refreshed {0}; every 5 s.",
    "ops.oldest": "oldest due {0}",
    "dlq.title": "Dead letters", "dlq.hint": "Work that failed for good. Replay puts it back for the engine; discard deletes the record.",
    "dlq.empty": "No dead letters. All work went through.", "dlq.replay": "Replay", "dlq.discard": "Discard",
    "dlq.replayAll": "Replay all", "dlq.showReplayed": "Show replayed", "dlq.kind": "Kind", "dlq.ref": "Reference",
    "dlq.error": "Error", "dlq.created": "Set aside", "dlq.replayed": "Replayed",
    "dlq.confirmDiscard": "Discard dead letter {0}? Its work stays failed.", "dlq.done": "Dead letter {0}: {1}",
    "kind.event": "event", "kind.timer": "timer", "kind.message": "message",
    "audit.title": "Audit log", "audit.at": "When", "audit.actor": "Who", "audit.action": "Action",
    "audit.target": "Target", "audit.detail": "Detail", "audit.empty": "Nothing recorded yet.",
    "action.deploy": "deploy", "action.replay": "replay", "action.discard": "discard",
    "action.pause": "pause", "action.resume": "resume", "action.stop": "stop",
    "channel.sms": "SMS", "channel.email": "Email", "channel.wecom": "WeCom", "channel.push": "Push",
    "seconds": "{0} s", "edge.event": "event", "edge.timeout": "timeout", "edge.else": "else"
  },
  "zh-CN": {
    brand: "旅程引擎",
    "nav.journeys": "旅程", "nav.users": "用户时间线", "nav.ops": "运行状态",
    "nav.deadLetters": "死信", "nav.audit": "审计日志",
    logout: "退出", footer: "数据实时读取自引擎数据库。",
    loading: "加载中…", error: "加载失败：{0}", none: "暂无数据。",
    "journeys.title": "旅程", "journeys.deployment": "部署 {0} · 版本 {1} · 部署于 {2}",
    "journeys.empty": "尚未部署任何旅程：请运行 journey deploy DIR。",
    "status.running": "运行中", "status.paused": "已暂停", "status.stopped": "已停止",
    entered: "进入", active: "进行中", sent: "已发送", delivered: "已送达", failed: "失败",
    bounced: "退回", suppressed: "已拦截", waiting: "待发送", cancelled: "已取消",
    pending: "待发送", scheduled: "已排期", sending: "发送中", processed: "已处理",
    converted: "已转化", reached: "到达", visits: "访问次数", rate: "转化率",
    "journey.graph": "旅程图", "journey.graphHint": "每个步骤显示到达的旅程数；发送步骤显示发出的消息数。",
    "journey.funnel": "漏斗", "journey.conversions": "转化", "journey.attribution": "渠道归因",
    "journey.splits": "A/B 分流", "journey.version": "版本", "journey.current": "当前部署",
    "journey.allVersions": "全部版本", "journey.back": "全部旅程",
    "journey.noGoal": "该旅程未设置转化目标。",
    "conv.goal": "目标：{1}内完成 {0}", "conv.open": "转化窗口仍开放",
    "conv.decided": "窗口关闭后的转化率", "conv.of": "{1} 人中 {0} 人",
    "attr.first": "首次触达", "attr.last": "末次触达", "attr.linear": "线性",
    "attr.none": "暂无可归因的转化。", "attr.unattributed": "{0} 次转化之前未收到任何消息。",
    "attr.channel": "渠道",
    "split.arm": "分组", "split.weight": "权重", "split.runs": "人数", "split.interval": "{0} 置信区间",
    "split.p": "与领先组相比的 p 值", "split.winner": "{0} 胜出：差异显著",
    "split.notYet": "差异尚不显著", "split.test": "{0}；显著性水平 {1}",
    "split.bonferroni": "（每次比较 {0}，Bonferroni 校正）", "split.leader": "领先",
    "funnel.entered": "进入旅程", "funnel.suppressedBy": "拦截原因：{0}",
    "kind.wait": "等待", "kind.wait_for": "等待事件", "kind.send": "发送",
    "kind.branch": "条件分支", "kind.split": "A/B 分流", "kind.removed": "已删除的步骤", "kind.end": "结束",
    "reason.unsubscribed": "已退订", "reason.no_address": "无地址",
    "reason.frequency_cap": "超出频次", "reason.quiet_hours": "免打扰",
    "reason.undeliverable": "无法送达", "reason.blocked": "地址已屏蔽",
    "users.title": "用户时间线", "users.search": "用户 ID（userId 或 anonymousId）",
    "users.show": "查看时间线", "users.notFound": "没有该用户的数据。",
    "users.events": "事件", "users.runs": "旅程", "users.messages": "消息",
    "tl.event": "事件", "tl.run": "旅程", "tl.message": "消息",
    "tl.entered": "进入 {0}", "tl.converted": "在 {0} 中转化", "tl.completed": "完成 {0}",
    "tl.exited": "退出 {0}", "tl.forgotten": "在 {0} 中被删除", "tl.active": "正在 {0} 中",
    "ops.title": "运行状态", "ops.timerLag": "定时器延迟", "ops.timersDue": "到期定时器",
    "ops.outbox": "待发消息积压", "ops.events": "待处理事件", "ops.deadLetters": "死信",
    "ops.queues": "Celery 队列深度", "ops.noBroker": "没有消息代理：引擎以内嵌模式运行（或代理不是 Redis）。",
    "ops.queue": "队列", "ops.depth": "深度", "ops.refreshed": "刷新于 {0}；每 5 秒刷新。",
    "ops.oldest": "最早到期于 {0}",
    "dlq.title": "死信", "dlq.hint": "彻底失败的任务。重放会交还引擎重新处理；丢弃会删除该记录。",
    "dlq.empty": "没有死信，所有任务均已完成。", "dlq.replay": "重放", "dlq.discard": "丢弃",
    "dlq.replayAll": "全部重放", "dlq.showReplayed": "显示已重放", "dlq.kind": "类型", "dlq.ref": "引用",
    "dlq.error": "错误", "dlq.created": "记录时间", "dlq.replayed": "重放时间",
    "dlq.confirmDiscard": "确定丢弃死信 {0}？其任务仍保持失败状态。", "dlq.done": "死信 {0}：{1}",
    "kind.event": "事件", "kind.timer": "定时器", "kind.message": "消息",
    "audit.title": "审计日志", "audit.at": "时间", "audit.actor": "操作人", "audit.action": "操作",
    "audit.target": "对象", "audit.detail": "详情", "audit.empty": "暂无记录。",
    "action.deploy": "部署", "action.replay": "重放", "action.discard": "丢弃",
    "action.pause": "暂停", "action.resume": "恢复", "action.stop": "停止",
    "channel.sms": "短信", "channel.email": "邮件", "channel.wecom": "企业微信", "channel.push": "推送",
    "seconds": "{0} 秒", "edge.event": "事件发生", "edge.timeout": "超时", "edge.else": "否则"
  }
};

window.currentLang = function () {
  var chosen = document.documentElement.lang;
  return window.I18N[chosen] ? chosen : "en";
};

window.t = function (key, values) {
  var words = window.I18N[window.currentLang()];
  var text = words[key];
  if (text === undefined) text = window.I18N.en[key];
  if (text === undefined) return key;
  (values || []).forEach(function (value, i) { text = text.split("{" + i + "}").join(String(value)); });
  return text;
};

/* A word if there is one (a kind, a status, a reason, a channel), else the word itself. */
window.tOr = function (prefix, word) {
  if (word === null || word === undefined) return "";
  var key = prefix + "." + word;
  var found = window.t(key);
  return found === key ? String(word) : found;
};
