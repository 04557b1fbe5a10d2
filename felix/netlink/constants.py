"""rtnetlink constants under the kernel's own names (include/uapi/linux/{netlink,rtnetlink}.h).

Keeping the kernel's spelling means every value can be checked against the headers.
"""

# Netlink protocol and socket options (linux/netlink.h).
NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NETLINK_GET_STRICT_CHK = 12

# Message types.
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK = 16
RTM_GETLINK = 18
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26

# nlmsg_flags.
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_APPEND = 0x800
# Flags on an NLMSG_ERROR reply.
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200

# Extended ack TLVs (enum nlmsgerr_attrs).
NLMSGERR_ATTR_MSG = 1
NLMSGERR_ATTR_OFFS = 2

# Route attributes (enum rtattr_type_t).
RTA_DST = 1
RTA_SRC = 2
RTA_IIF = 3
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_PREFSRC = 7
RTA_METRICS = 8
RTA_MULTIPATH = 9
RTA_TABLE = 15

# Link attributes.
IFLA_IFNAME = 3

# Route types (rtm_type).
RTN_UNSPEC = 0
RTN_UNICAST = 1
RTN_LOCAL = 2
RTN_BROADCAST = 3
RTN_BLACKHOLE = 6
RTN_UNREACHABLE = 7
RTN_PROHIBIT = 8

# Scopes (rtm_scope).
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_HOST = 254
RT_SCOPE_NOWHERE = 255

# Tables.
RT_TABLE_UNSPEC = 0
RT_TABLE_MAIN = 254
RT_TABLE_LOCAL = 255

# Next-hop flags (rtnh_flags, also reported in rtm_flags).
RTNH_F_DEAD = 1
RTNH_F_PERVASIVE = 2
RTNH_F_ONLINK = 4
RTNH_F_LINKDOWN = 16

# Well-known route protocols (rtm_protocol).
RTPROT_KERNEL = 2
RTPROT_BOOT = 3
RTPROT_STATIC = 4
