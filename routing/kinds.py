"""Business kinds (业务种类编码, Purp/Prtry, 5 digits) the gateway sends, from SPEC.md d.5.

A kind outside this table is refused rather than sent: the NPC and the payee's bank
read it to book the payment, and a made-up code (99999) would be rejected there, after
the payer's money was held. Where SPEC.md d.5 says which kinds go with a business type
(the list its source system's screen restricts to), a kind outside that list is refused
too; a type SPEC.md gives no list for takes any kind of the table. A kind the NPC adds
later is added here, with its line of SPEC.md.
"""

from __future__ import annotations

KINDS = {
    "02101": "现金汇款", "02102": "普通汇兑", "02103": "网银支付", "02104": "外汇清算",
    "02105": "资金调拨", "02106": "委托收款（划回）", "02107": "托收承付（划回）",
    "02108": "退汇", "02110": "内地机构境外发行债券兑付", "02111": "债券结算",
    "02112": "货物贸易结算", "02113": "货物贸易结算退款", "02114": "服务贸易结算",
    "02115": "服务贸易结算退款", "02116": "基本/资本项下跨境支付", "02117": "跨境支付退款",
    "02118": "资金拆借", "02119": "同业拆借", "02120": "同业拆借",
    "02121": "同业拆借", "02122": "人行跨区域票据交换轧差净额",
    "02201": "中央预算收入", "02202": "省级预算收入", "02203": "地市级预算收入",
    "02204": "县级预算收入", "02205": "国债兑付",
    "02704": "再贴现", "02705": "再贴现", "02706": "再贴现",
    "02901": "银行汇票资金移存", "02902": "银行汇票资金清算", "02903": "银行汇票资金多余划回",
    "02904": "银行汇票资金未用退回",
    "03001": "国库汇款", "03101": "国库同城交换净额清算", "03201": "支取发行基金",
    "03301": "现金", "03302": "转账",
    "03401": "支票", "03402": "银行汇票", "03403": "商业承兑汇票", "03404": "银行承兑汇票",
    "03405": "商业本票", "03406": "银行本票",
    "03602": "日终自动拆借", "04001": "再贴现", "04101": "再贷款",
    "00100": "电费", "00200": "水暖费", "00300": "煤气费", "00400": "电话费",
    "00500": "通讯费", "00600": "保险费", "00700": "房屋管理费", "00800": "代理服务费",
    "00900": "学教费", "01000": "有线电视费", "01100": "缴费", "01200": "薪金报酬",
    "01300": "慈善捐款", "01400": "缴费", "09001": "其他",
}

# The kinds SPEC.md d.5 allows with a business type, for the types it gives a list for.
KINDS_OF_TYPE = {
    "A100": ("02101", "02102", "02103", "02104", "02105", "02106", "02107", "02110",
             "02111", "02112", "02113", "02114", "02115", "02116", "02117", "09001"),
    "A101": ("01300", "09001"),
    "A102": ("03001",),
    "A103": ("03101",),
    "A104": ("02201", "02202", "02203", "02204"),
    "A105": ("02108",),
    "A106": ("03201",),
    "A107": ("02111",),
    "A200": ("02118", "02105"),
    "A201": ("03401",),
    "A202": ("02901", "02902", "02903", "02904"),
    "A307": ("02205",),
}


# Where the client finds both tables: the client has the product's documentation, not
# SPEC.md (tests/test_routing_kinds.py checks that page against the tables above).
KINDS_DOC = "docs/routing.md, Business kinds"


def kind_problem(business_type: object, business_kind: object) -> tuple[str, str] | None:
    """(code, expected) of the rule a well-formed 5-digit kind breaks, or None. The
    expectation lists the kinds the type allows when it has a list, and names the page
    listing every kind when it has none."""
    allowed = KINDS_OF_TYPE.get(business_type) if isinstance(business_type, str) else None
    if business_kind not in KINDS:
        if allowed is not None:
            return ("business_kind_unknown",
                    f"with business type {business_type}: one of {', '.join(allowed)} "
                    f"({KINDS_DOC})")
        return ("business_kind_unknown",
                f"a business kind listed in {KINDS_DOC}, such as 02102 (普通汇兑)")
    if allowed is not None and business_kind not in allowed:
        return ("business_kind_not_allowed_for_type",
                f"with business type {business_type}: one of {', '.join(allowed)} "
                f"({KINDS_DOC})")
    return None
