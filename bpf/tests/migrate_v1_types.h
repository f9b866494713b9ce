/* Version 1's value layouts, shared by the fixtures that change something else
 * (the key, the size of the map) and keep these (see migrate.h). */
struct flow_value {
    unsigned int packets;
    unsigned int bytes;
    unsigned char tos;
};
struct last_value {
    unsigned short len;
    unsigned char proto;
};
