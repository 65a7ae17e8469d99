"""Words that point at a category, from docs/taxonomy.md: what the model knows beyond its training messages.

Each cue a message contains adds one feature for its category, so a word the training messages never
used ("scaffolding", "曱甴") still counts for the right category. Chinese cues are one to three characters
(they are matched as character n-grams); English cues are single lower-case words (matched as words).
A model stores the lexicon it was trained with, so changing this file changes only models trained later.
"""

from __future__ import annotations

CUES: dict[str, tuple[str, ...]] = {
    "utilities": (
        "停水", "没水", "断水", "水压", "水小", "黄水", "浑水", "自来水", "水管", "爆管", "总阀", "水表", "水费",
        "水箱",
        "停电", "没电", "断电", "跳闸", "电闸", "电压", "电费", "电表", "供电", "变压器", "停气", "没气", "燃气费",
        "燃气表", "天然气", "暖气", "供暖", "供热", "地暖", "热水", "锅炉", "二次供水", "冇水", "冇电", "水浸",
        "water", "electricity", "power", "outage", "blackout", "heating", "radiator", "boiler", "pressure", "tap",
        "taps", "voltage", "meter", "pipe", "pipes", "supply",
    ),
    "facilities": (
        "电梯", "升降机", "轿厢", "路灯", "楼道灯", "感应灯", "灯泡", "门禁", "门卡", "单元门", "闭门器", "道闸",
        "闸机",
        "栏杆", "护栏", "扶手", "台阶", "楼梯", "井盖", "路面", "坑洼", "地砖", "屋顶", "防水", "健身器", "滑梯",
        "秋千", "跷跷板", "充电桩", "快递柜", "公厕", "座椅", "长椅", "围栏", "围墙", "信报箱", "监控坏", "坡道",
        "lift", "lifts", "elevator", "elevators", "streetlight", "lamp", "lights", "bulb", "gate", "barrier",
        "pothole", "manhole", "railing", "handrail", "stairs", "stairwell", "roof", "playground", "swing",
        "slide", "bench", "charger", "chargers", "intercom", "doorbell", "pavement", "locker",
    ),
    "sanitation": (
        "垃圾", "清运", "保洁不", "打扫", "清理", "下水道", "堵了", "堵塞", "化粪池", "污水", "臭", "异味", "老鼠",
        "蟑螂", "曱甴", "蚊子", "苍蝇", "虫子", "消杀", "灭鼠", "狗屎", "狗粪", "粪便", "尿", "树枝", "修剪", "绿化",
        "草坪", "落叶", "油烟", "鸽子", "蜂窝", "马蜂", "发霉", "脏", "死老鼠", "渠", "排水沟",
        "rubbish", "trash", "garbage", "bins", "bin", "litter", "dumped", "sewage", "drain", "drains", "smell",
        "smells", "stink", "stinks", "rats", "mice", "cockroach", "cockroaches", "mosquitoes", "flies", "pests",
        "poop", "mess", "hedges", "trees", "branches", "weeds", "fumes", "dirty", "filthy", "mould", "mold",
    ),
    "noise": (
        "噪音", "吵", "嘈", "扰民", "装修", "电钻", "砸墙", "打桩", "广场舞", "音响", "喇叭", "唱歌", "ktv", "狗叫",
        "喧哗", "半夜", "凌晨", "睡不着", "麻将", "蹦迪", "轰油门", "鸣笛", "嗡嗡",
        "noise", "noisy", "loud", "drilling", "renovation", "music", "karaoke", "barking", "barks", "party",
        "parties", "shouting", "sleep", "construction", "hammering", "bass", "speakers",
    ),
    "parking": (
        "停车", "乱停", "违停", "车位", "挪车", "消防通道", "占道停", "僵尸车", "共享单车", "单车", "堵车", "红绿灯",
        "信号灯", "斑马线", "减速带", "地锁", "车库出口", "泊车", "停车费", "月卡",
        "parking", "parked", "park", "car", "cars", "van", "vehicle", "vehicles", "bikes", "scooters",
        "traffic", "crossing", "tow", "towed", "abandoned",
    ),
    "safety": (
        "着火", "起火", "火灾", "冒烟", "烟味", "煤气味", "燃气味", "漏气", "火花", "电线", "飞线", "充电", "电瓶车",
        "电动车", "高空抛物", "扔东西", "小偷", "被偷", "偷了", "盗", "可疑", "陌生人", "撬", "狗咬", "咬人",
        "外墙", "瓷砖", "脱落", "群租", "灭火器", "消防栓", "烟感", "诈骗", "骗子", "冒充", "治安", "安全隐患",
        "fire", "smoke", "gas", "sparks", "stolen", "steal", "thief", "thieves", "theft", "burglary", "robbed",
        "suspicious", "stranger", "strangers", "scam", "scammer", "bite", "bit", "bitten", "tiles", "facade",
        "extinguisher", "hydrant", "hazard", "cctv",
    ),
    "dispute": (
        "邻居", "楼上", "楼下", "对门", "隔壁", "纠纷", "吵架", "调解", "协调", "不承认", "不认账", "赔偿", "赔钱",
        "威胁", "骂", "渗水", "漏到", "占用楼道", "堆杂物", "隐私", "沟通无果", "闹矛盾", "隔篱",
        "neighbour", "neighbours", "neighbor", "neighbors", "upstairs", "downstairs", "mediate",
        "mediation", "dispute", "quarrel", "argue", "argument", "refuse", "refuses", "threatened", "compensation",
    ),
    "property": (
        "物业费", "物业公司", "管理费", "管理处", "维修基金", "押金", "保证金", "收费", "发票", "收据", "公示", "账目",
        "保安", "门卫", "保洁", "客服", "前台", "态度", "业委会", "物业经理", "报修", "推诿", "不作为",
        "management", "fee", "fees", "deposit", "refund", "guard", "guards", "security", "cleaner", "cleaners",
        "staff", "rude", "receipt", "invoice", "accounts", "committee",
    ),
    "assistance": (
        "独居", "老人", "孤寡", "空巢", "残疾", "轮椅", "失智", "摔倒", "摔伤", "晕倒", "走失", "走丢", "看病", "送医",
        "陪诊", "买菜", "买药", "跑腿", "志愿者", "微心愿", "照顾", "探访", "留守", "行动不便", "送餐", "助餐",
        "elderly", "alone", "disabled", "wheelchair", "dementia", "fell", "fallen", "collapsed", "missing",
        "volunteer", "volunteers", "groceries", "errands", "carer", "visit", "lonely",
    ),
    "services": (
        "证明", "社保", "医保", "养老金", "养老保险", "户口", "落户", "户籍", "身份证", "居住证", "补贴", "津贴",
        "低保", "疫苗", "接种", "政策", "选举", "选民", "办理", "申请", "材料", "补办", "失业金", "公积金", "入学",
        "残疾证", "生育", "退休", "就业",
        "certificate", "insurance", "pension", "subsidy", "allowance", "vaccine", "vaccination", "registration",
        "register", "permit", "visa", "documents", "apply", "application", "election", "voter", "benefits",
    ),
    "construction": (
        "违建", "违章", "搭建", "加建", "扩建", "私搭", "乱搭", "圈地", "圈占", "占地", "铁皮房", "彩钢", "摆摊",
        "摊贩", "占道经营", "占道", "门面", "改建", "承重墙", "雨棚",
        "illegal", "extension", "shed", "vendors", "vendor", "stalls", "stall", "hawkers", "fenced", "enclosed",
        "built", "structure",
    ),
    "other": (
        "宽带", "网络", "断网", "信号", "有线电视", "洗衣机", "冰箱", "空调", "热水器", "马桶", "油烟机", "开锁",
        "钥匙", "师傅", "推荐", "快递", "家电", "维修师傅",
        "broadband", "internet", "wifi", "washing", "fridge", "locksmith", "keys", "parcel", "repairman", "appliance",
    ),
}


def lexicon() -> dict[str, str]:
    """{feature token: category}, keyed the way `features.tokens` writes tokens: a Chinese cue of up to
    three characters as a character n-gram, a longer one or an English one as a jieba word."""
    from handlers.triage.features import WORD_MARK

    table: dict[str, str] = {}
    for category, cues in CUES.items():
        for cue in cues:
            key = cue if len(cue) <= 3 and not cue.isascii() else WORD_MARK + cue
            table.setdefault(key, category)
    return table
